"""Asset factories: dimensions, facts, calendar, analytics and orphan maintenance."""
