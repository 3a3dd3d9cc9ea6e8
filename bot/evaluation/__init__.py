"""`patchling eval`: run a task suite against the model tiers and score them.

tasks (suites.py) -> one task on one tier (runner.py) -> scores (scores.py)
-> a Rich table or JSON (render.py), and rows in the records database.
"""
