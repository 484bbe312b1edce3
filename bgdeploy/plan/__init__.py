"""Pure planning: from observed state and the spec to steps, configs, verdicts and reports. No I/O."""
