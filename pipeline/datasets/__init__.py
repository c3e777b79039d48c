"""One reader module per dataset, all yielding `records.SequenceRecord`."""
