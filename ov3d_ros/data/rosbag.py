"""rosbag2 reading and writing (MCAP and sqlite3) with the pure-Python ``rosbags`` library.

No rclpy here: messages decode to ``rosbags`` typestore objects (ROS 2 Kilted types plus any type whose
definition the bag carries), and the raw CDR bytes stay available for rclpy-side deserialisation.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

import yaml
from rosbags.interfaces import (
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ov3d_ros.messages.types import stamp_to_ns

__all__ = [
    "BagError",
    "BagMessage",
    "BagReader",
    "BagWriter",
    "QosSpec",
    "TopicInfo",
    "default_qos",
    "message_to_stamp_ns",
    "new_typestore",
]

Durability = Literal["transient_local", "volatile"]
Reliability = Literal["reliable", "best_effort"]
Storage = Literal["mcap", "sqlite3"]

TF_STATIC = "/tf_static"
DEFAULT_DEPTH = 10
MAX_LATCHED_DEPTH = 100
BAG_VERSION = 9
_STORAGE_PLUGINS: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_STORAGE_BY_SUFFIX: dict[str, Storage] = {".mcap": "mcap", ".db3": "sqlite3"}
# rosbag2 v8 metadata stores QoS enums as integers (rmw values); v9 stores lower-case names.
_V8_RELIABILITY = {1: "reliable", 2: "best_effort"}
_V8_DURABILITY = {1: "transient_local", 2: "volatile"}
_INFINITE = QosTime(9223372036, 854775807)  # RMW_DURATION_INFINITE, as `ros2 bag record` writes it


class BagError(ValueError):
    """A bag is missing, is not a rosbag2 bag, cannot be read or cannot be written."""


def new_typestore() -> Typestore:
    """A fresh ROS 2 Kilted typestore (readers register bag-defined types into their own)."""
    return get_typestore(Stores.ROS2_KILTED)


def _one_line(err: BaseException | str) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@dataclass(frozen=True, slots=True)
class QosSpec:
    """Offered QoS of a topic, as plain data (what a replaying publisher should offer)."""

    durability: Durability = "volatile"
    reliability: Reliability = "reliable"
    depth: int = DEFAULT_DEPTH

    def __post_init__(self) -> None:
        if self.durability not in get_args(Durability):
            raise ValueError(f"durability must be one of {get_args(Durability)}, got {self.durability!r}")
        if self.reliability not in get_args(Reliability):
            raise ValueError(f"reliability must be one of {get_args(Reliability)}, got {self.reliability!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth must be a positive int, got {self.depth!r}")

    @property
    def latched(self) -> bool:
        """True for transient_local (late subscribers get the last ``depth`` messages)."""
        return self.durability == "transient_local"


def default_qos(topic: str, message_count: int = MAX_LATCHED_DEPTH) -> QosSpec:
    """QoS assumed when none is recorded: latched for /tf_static (depth = its message count, 1..100),
    otherwise reliable, volatile, depth 10."""
    if topic == TF_STATIC:
        return QosSpec("transient_local", "reliable", min(max(message_count, 1), MAX_LATCHED_DEPTH))
    return QosSpec()


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic of a bag: type, message count and offered QoS."""

    name: str
    msgtype: str
    count: int
    durability: Durability
    reliability: Reliability
    depth: int

    @property
    def qos(self) -> QosSpec:
        """The offered QoS as a :class:`QosSpec`."""
        return QosSpec(self.durability, self.reliability, self.depth)


@dataclass(frozen=True, slots=True)
class BagMessage:
    """One recorded message: raw CDR plus what is needed to decode it lazily."""

    topic: str
    msgtype: str
    timestamp_ns: int  # log (receive) time
    raw: bytes  # CDR with its 4-byte encapsulation header
    _reader: BagReader | None = field(default=None, repr=False, compare=False)

    def decode(self) -> Any:
        """Deserialise with the reader's typestore (see :meth:`BagReader.decode`)."""
        if self._reader is None:
            raise BagError(f"message on {self.topic} was not read from a bag; use a BagReader to decode it")
        return self._reader.decode(self)


def message_to_stamp_ns(msg: Any) -> int | None:
    """``msg.header.stamp`` in nanoseconds, or None when the message has no header stamp."""
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    if stamp is None:
        return None
    return stamp_to_ns(stamp)


def _profile_values(profile: Qos | dict[str, Any]) -> tuple[str, str, int]:
    """(durability, reliability, depth) of one offered profile, in rosbags' Qos or metadata-dict form."""
    if isinstance(profile, Qos):
        return profile.durability.name.lower(), profile.reliability.name.lower(), int(profile.depth)
    durability, reliability = profile.get("durability"), profile.get("reliability")
    if isinstance(durability, int):
        durability = _V8_DURABILITY.get(durability, "")
    if isinstance(reliability, int):
        reliability = _V8_RELIABILITY.get(reliability, "")
    return str(durability).lower(), str(reliability).lower(), int(profile.get("depth") or 0)


def _offered_profiles(offered: list[Qos] | str | None) -> list[Qos | dict[str, Any]]:
    """rosbags >= 0.10 parses profiles into Qos objects; older releases hand over the YAML text."""
    if not offered:
        return []
    if isinstance(offered, str):
        try:
            loaded = yaml.safe_load(offered)
        except yaml.YAMLError as exc:
            raise BagError(f"offered_qos_profiles is not valid YAML: {_one_line(exc)}") from None
        return [p for p in loaded or [] if isinstance(p, dict)]
    return list(offered)


def _topic_qos(topic: str, profiles: list[Qos | dict[str, Any]], message_count: int) -> QosSpec:
    """Merge the profiles offered by all recorded publishers the way ``ros2 bag play`` adapts them:
    latched only if every publisher was, reliable unless one was best-effort, the largest depth."""
    if not profiles:
        return default_qos(topic, message_count)
    values = [_profile_values(p) for p in profiles]
    durability: Durability = "transient_local" if all(d == "transient_local" for d, _, _ in values) else "volatile"
    reliability: Reliability = "best_effort" if any(r == "best_effort" for _, r, _ in values) else "reliable"
    depth = max(d for _, _, d in values)
    return QosSpec(durability, reliability, depth if depth > 0 else DEFAULT_DEPTH)


def _to_rosbags_qos(spec: QosSpec) -> Qos:
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=spec.depth,
        reliability=QosReliability[spec.reliability.upper()],
        durability=QosDurability[spec.durability.upper()],
        deadline=_INFINITE,
        lifespan=_INFINITE,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_INFINITE,
        avoid_ros_namespace_conventions=False,
    )


class BagReader:
    """Read a rosbag2 bag (directory with metadata.yaml, or a bare .mcap/.db3 file).

    Opens on construction; use as a context manager or call :meth:`close`. Types the typestore lacks
    (our ov3d_interfaces, vendor messages) are registered from the definitions recorded in the bag.
    """

    def __init__(self, path: str | os.PathLike[str], typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        self.typestore = typestore if typestore is not None else new_typestore()
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            raise BagError(f"not a rosbag2 bag (no metadata.yaml): {self.path}")
        if self.path.is_file() and self.path.suffix not in _STORAGE_BY_SUFFIX:
            raise BagError(f"not a rosbag2 bag (expected a directory, .mcap or .db3): {self.path}")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # the storage boundary: sqlite, mcap parsing, YAML, OS errors
            raise BagError(f"cannot read bag {self.path}: {_one_line(exc)}") from exc
        try:
            self.storage: Storage = self._detect_storage()
            self.topics: dict[str, TopicInfo] = self._topic_infos()
            self._type_errors: dict[str, str] = self._register_bag_types()
        except BaseException:
            self._reader.close()
            raise
        count = self._reader.message_count
        self.start_ns: int = self._reader.start_time if count else 0
        self.end_ns: int = self._reader.end_time - 1 if count else 0  # rosbags' end_time is last + 1

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last message (0 for an empty bag)."""
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def message_count(self) -> int:
        """Total number of messages."""
        return sum(t.count for t in self.topics.values())

    def _detect_storage(self) -> Storage:
        if self.path.is_file():
            return _STORAGE_BY_SUFFIX[self.path.suffix]
        meta = yaml.safe_load((self.path / "metadata.yaml").read_text())
        # rosbags accepted the metadata, so the identifier is one of its plugins
        return meta["rosbag2_bagfile_information"]["storage_identifier"]

    def _topic_infos(self) -> dict[str, TopicInfo]:
        by_topic: dict[str, list[Any]] = {}
        for conn in self._reader.connections:
            by_topic.setdefault(conn.topic, []).append(conn)
        infos: dict[str, TopicInfo] = {}
        for topic, conns in sorted(by_topic.items()):
            msgtypes = sorted({c.msgtype for c in conns})
            if len(msgtypes) > 1:
                raise BagError(f"topic {topic} is recorded with several types ({', '.join(msgtypes)}): unsupported")
            count = sum(c.msgcount for c in conns)
            profiles = [p for c in conns for p in _offered_profiles(getattr(c.ext, "offered_qos_profiles", None))]
            qos = _topic_qos(topic, profiles, count)
            infos[topic] = TopicInfo(topic, msgtypes[0], count, qos.durability, qos.reliability, qos.depth)
        return infos

    def _register_bag_types(self) -> dict[str, str]:
        """Register missing types from the bag's definitions; returns why a type could not be."""
        errors: dict[str, str] = {}
        for conn in self._reader.connections:
            msgtype, msgdef = conn.msgtype, conn.msgdef
            if msgtype in self.typestore.fielddefs or msgtype in errors:
                continue
            if msgdef.format == MessageDefinitionFormat.NONE or not msgdef.data:
                errors[msgtype] = "it is not in the typestore and the bag carries no definition for it"
                continue
            try:
                if msgdef.format == MessageDefinitionFormat.MSG:
                    types = get_types_from_msg(msgdef.data, msgtype)
                else:
                    types = get_types_from_idl(msgdef.data)
                self.typestore.register({k: v for k, v in types.items() if k not in self.typestore.fielddefs})
            except Exception as exc:  # parser errors come in several types
                errors[msgtype] = f"its definition in the bag cannot be used: {_one_line(exc)}"
        return errors

    def messages(
        self,
        topics: Iterable[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[BagMessage]:
        """Messages in log-time order, optionally only ``topics`` and ``start_ns <= t <= end_ns``.

        Each storage file is read in time order; a split bag's files follow one another in time.
        """
        wanted = None if topics is None else set([topics] if isinstance(topics, str) else topics)
        if wanted is not None and (unknown := wanted - self.topics.keys()):
            raise BagError(f"topics not in bag {self.path}: {', '.join(sorted(unknown))} "
                           f"(bag has: {', '.join(self.topics) or 'none'})")
        if not self._reader.is_open:
            raise BagError(f"bag {self.path} is closed")
        conns = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        if not conns:  # rosbags reads every topic when given no connection
            return iter(())
        return self._stream(conns, start_ns, None if end_ns is None else end_ns + 1)

    def _stream(self, conns: list[Any], start: int | None, stop: int | None) -> Iterator[BagMessage]:
        try:
            for conn, timestamp, data in self._reader.messages(conns, start, stop):
                yield BagMessage(conn.topic, conn.msgtype, timestamp, bytes(data), self)
        except Exception as exc:  # corrupt chunk / database page while streaming
            raise BagError(f"cannot read messages from {self.path}: {_one_line(exc)}") from exc

    def decode(self, msg: BagMessage) -> Any:
        """Deserialise a message's CDR into a typestore object."""
        if msg.msgtype in self._type_errors:
            raise BagError(f"cannot decode {msg.msgtype} on {msg.topic}: {self._type_errors[msg.msgtype]}")
        try:
            return self.typestore.deserialize_cdr(msg.raw, msg.msgtype)
        except (SerdeError, KeyError) as exc:
            raise BagError(f"cannot decode {msg.msgtype} on {msg.topic} at {msg.timestamp_ns} ns: "
                           f"{_one_line(exc)}") from exc

    def close(self) -> None:
        """Close the bag (idempotent)."""
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class BagWriter:
    """Write a rosbag2 (format version 9) bag directory, atomically.

    The bag is written into a hidden temporary sibling folder and renamed to ``path`` only when the
    ``with`` block (or :meth:`close`) succeeds; on an exception (or :meth:`abort`) nothing is left at
    ``path``. An existing bag at ``path`` is only replaced with ``overwrite=True``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        storage: Storage = "mcap",
        typestore: Typestore | None = None,
        *,
        overwrite: bool = False,
    ) -> None:
        if storage not in _STORAGE_PLUGINS:
            raise BagError(f"unsupported storage {storage!r}: expected one of {', '.join(_STORAGE_PLUGINS)}")
        self.path = Path(path)
        self.storage: Storage = storage
        self.typestore = typestore if typestore is not None else new_typestore()
        self.overwrite = overwrite
        self._check_target()
        self._staging: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}

    def _check_target(self) -> None:
        if not (self.path.exists() or self.path.is_symlink()):
            return
        if not self.overwrite:
            raise BagError(f"{self.path} already exists; pass overwrite=True to replace it")
        is_bag = self.path.is_dir() and not self.path.is_symlink() and (
            (self.path / "metadata.yaml").is_file() or not any(self.path.iterdir()))
        if not is_bag:
            raise BagError(f"refusing to overwrite {self.path}: it is not a rosbag2 bag directory")

    def open(self) -> None:
        """Start writing into the temporary sibling folder (done by ``with``)."""
        if self._writer is not None:
            raise BagError(f"bag writer for {self.path} is already open")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
            self._writer = Writer(self._staging / self.path.name, version=BAG_VERSION,
                                  storage_plugin=_STORAGE_PLUGINS[self.storage])
            self._writer.open()
        except Exception as exc:
            self.abort()
            raise BagError(f"cannot create bag {self.path}: {_one_line(exc)}") from exc

    def _open_writer(self) -> Writer:
        if self._writer is None:
            raise BagError(f"bag writer for {self.path} is not open; use it as a context manager")
        return self._writer

    def add_topic(self, name: str, msgtype: str, qos: QosSpec | None = None) -> None:
        """Declare a topic; ``qos`` (default: :func:`default_qos`) is stored as its offered QoS profile."""
        writer = self._open_writer()
        if name in self._connections:
            raise BagError(f"topic {name} was already added to {self.path}")
        if msgtype not in self.typestore.fielddefs:
            raise BagError(f"unknown message type {msgtype}: register it in the writer's typestore first")
        spec = qos if qos is not None else default_qos(name)
        self._connections[name] = writer.add_connection(
            name, msgtype, typestore=self.typestore, offered_qos_profiles=[_to_rosbags_qos(spec)])

    def _connection(self, topic: str, timestamp_ns: int) -> Any:
        if topic not in self._connections:
            raise BagError(f"topic {topic} was not added to {self.path}; call add_topic first")
        if not isinstance(timestamp_ns, int) or timestamp_ns < 0:
            raise BagError(f"timestamp_ns must be a non-negative int, got {timestamp_ns!r}")
        return self._connections[topic]

    def write(self, topic: str, timestamp_ns: int, message: Any) -> None:
        """Serialise a typestore message object to CDR and write it at log time ``timestamp_ns``."""
        writer = self._open_writer()
        conn = self._connection(topic, timestamp_ns)
        try:
            raw = self.typestore.serialize_cdr(message, conn.msgtype)
        except Exception as exc:  # wrong object type or field values: errors vary with the field
            raise BagError(f"cannot serialise message for {topic} as {conn.msgtype}: {_one_line(exc)}") from exc
        writer.write(conn, timestamp_ns, raw)

    def write_raw(self, topic: str, timestamp_ns: int, cdr: bytes | bytearray | memoryview) -> None:
        """Write already-serialised CDR (with its 4-byte encapsulation header) at ``timestamp_ns``."""
        writer = self._open_writer()
        conn = self._connection(topic, timestamp_ns)
        if len(cdr) < 4 or bytes(cdr[:2]) not in (b"\x00\x00", b"\x00\x01"):
            raise BagError(f"data for {topic} is not CDR (missing or unknown encapsulation header)")
        writer.write(conn, timestamp_ns, bytes(cdr))

    def close(self) -> None:
        """Finish the bag and move it to ``path`` (replacing the old bag when ``overwrite``)."""
        writer = self._open_writer()
        assert self._staging is not None
        staged, replaced = self._staging / self.path.name, self._staging / ".replaced"
        try:
            writer.close()
            self._writer = None
            self._check_target()  # something may have appeared at path while writing
            if self.path.exists():
                os.replace(self.path, replaced)
            try:
                os.replace(staged, self.path)
            except OSError:
                if replaced.exists():  # put the old bag back rather than lose it with the staging folder
                    os.replace(replaced, self.path)
                raise
        except Exception as exc:
            self.abort()
            if isinstance(exc, BagError):
                raise
            raise BagError(f"cannot finish bag {self.path}: {_one_line(exc)}") from exc
        shutil.rmtree(self._staging, ignore_errors=True)
        self._staging = None

    def abort(self) -> None:
        """Discard everything written so far (nothing is left at ``path``)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # the staging folder is removed below either way
                pass
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> BagWriter:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
