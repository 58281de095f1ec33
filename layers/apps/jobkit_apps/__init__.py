"""jobkit's built-in apps: email, reminders, syndication and the nightly batch.

Each module declares an app's job types (what producers import) and the records it keeps;
their workers live in `functions/<app>/`. The core library (`jobkit`) never imports these.
"""
