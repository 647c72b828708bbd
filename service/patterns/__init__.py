"""Patterns per source: every template a source sent, with counts, and the novelty rule on top of them."""
