"""The weekly lifecycle funnel: stages declared as ordered conditions under `funnel:` in the
project's `health.yaml`, counted per weekly cohort with the bottleneck named (engine/funnel/
report.py), and the playbooks that act on the bottleneck beside their effect (effect.py)."""
