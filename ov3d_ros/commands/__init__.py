"""Handlers of `ov3d` verbs: argparse namespaces in, library calls, one printed summary out."""
