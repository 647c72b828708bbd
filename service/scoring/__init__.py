"""Scoring: the classifier loop that turns closed windows into verdicts."""
