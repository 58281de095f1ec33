"""`jobkit dashboard`: the admin API (`jobkit.client.Jobkit`) as web pages.

app.py builds the Flask app; server.py holds what every page shares (the stack, the guards:
loopback hosts, CSRF, read-only; the error pages, template helpers); pages_*.py are the pages
(overview, jobs, a job, dead letters, schedules), each a thin face of `Jobkit` calls; chart.py
draws the activity chart as SVG; job_logs.py finds a job's log lines; serving.py runs it with
waitress; command.py is the `jobkit dashboard` command; screenshots.py makes the README's
pictures. Nothing here is imported by the CLI's other commands, so they do not load Flask.
"""
