"""Offline side of Vigil: synthetic data generation, data quality, features, training, evaluation."""
