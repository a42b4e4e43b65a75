"""Neural models: the sparse 3D student network distilled from fused 2D teacher features."""
