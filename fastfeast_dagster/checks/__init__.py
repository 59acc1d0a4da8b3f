"""Great Expectations suites derived from the contract, and the runner that validates partitions."""
