"""The language side: text encoders, label vocabularies with cached embeddings, open_clip model loading (ROS-free)."""
