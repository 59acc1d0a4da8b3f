"""Pure validation: frame + contract → (typed clean rows, rejects with reasons). No Dagster here."""
