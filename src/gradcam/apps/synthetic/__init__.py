"""Synthetic data with known answers (shapes), small networks, and training them."""
