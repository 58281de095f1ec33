"""The reminders worker: runs the steps of reminder sequences (`jobkit_apps.reminders`)."""
