"""The decision: rules, the decision policy, scorer calls and the screening of a batch."""
