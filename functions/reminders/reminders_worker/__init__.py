"""The reminders worker: runs the steps of reminder sequences (`jobkit.catalog.reminders`)."""
