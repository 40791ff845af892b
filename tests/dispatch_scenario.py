"""The scenario the dispatcher-process tests share: two one-step playbooks emailing every admin
and champion the day after their contract starts, and a SendGrid project capped at one email a
contact a day under a database-limited rate of 50/s."""

TWO_PLAYBOOKS = {
    pid: f"""
id: {pid}
name: {pid}
trigger: {{date: contract_start, offset: 1d}}
steps:
  - email: {{to: {{role: [admin, champion]}}, template: welcome/hello}}
"""
    for pid in ("first", "second")
}

CAPPED_SENDGRID = """
channel: sendgrid
sendgrid: {api_key_env: SENDGRID_API_KEY, concurrency: 8, attempts: 1}
policy:
  caps: {contact: {day: 1}}
  rate_limit: 50
  rate_limiter: database
"""
