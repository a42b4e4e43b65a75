"""Offline evaluation: segmentation metrics, plots and JSON reports."""
