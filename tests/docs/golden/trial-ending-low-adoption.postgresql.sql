SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, to_char(CASE WHEN jsonb_typeof(accounts.traits -> 'trial_ends_on') = 'string' AND (accounts.traits ->> 'trial_ends_on') ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$' AND substr((accounts.traits ->> 'trial_ends_on'), 1, 4) <> '0000' THEN CASE WHEN to_char(make_date(CAST(substr((accounts.traits ->> 'trial_ends_on'), 1, 4) AS INTEGER), CAST(substr((accounts.traits ->> 'trial_ends_on'), 6, 2) AS INTEGER), 1) + (CAST(substr((accounts.traits ->> 'trial_ends_on'), 9, 2) AS INTEGER) - 1), 'YYYY-MM-DD') = (accounts.traits ->> 'trial_ends_on') THEN CAST((accounts.traits ->> 'trial_ends_on') AS DATE) END END, 'YYYY-MM-DD') AS trigger_key 
FROM accounts 
WHERE (accounts.id NOT IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.contact_id IS NOT NULL AND events.name = 'login' AND events.occurred_at > '2026-11-09 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00' GROUP BY events.account_id 
HAVING count(DISTINCT events.contact_id) > 2)) AND CASE WHEN jsonb_typeof(accounts.traits -> 'trial_ends_on') = 'string' AND (accounts.traits ->> 'trial_ends_on') ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$' AND substr((accounts.traits ->> 'trial_ends_on'), 1, 4) <> '0000' THEN CASE WHEN to_char(make_date(CAST(substr((accounts.traits ->> 'trial_ends_on'), 1, 4) AS INTEGER), CAST(substr((accounts.traits ->> 'trial_ends_on'), 6, 2) AS INTEGER), 1) + (CAST(substr((accounts.traits ->> 'trial_ends_on'), 9, 2) AS INTEGER) - 1), 'YYYY-MM-DD') = (accounts.traits ->> 'trial_ends_on') THEN CAST((accounts.traits ->> 'trial_ends_on') AS DATE) END END > '2026-11-23' AND CASE WHEN jsonb_typeof(accounts.traits -> 'trial_ends_on') = 'string' AND (accounts.traits ->> 'trial_ends_on') ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$' AND substr((accounts.traits ->> 'trial_ends_on'), 1, 4) <> '0000' THEN CASE WHEN to_char(make_date(CAST(substr((accounts.traits ->> 'trial_ends_on'), 1, 4) AS INTEGER), CAST(substr((accounts.traits ->> 'trial_ends_on'), 6, 2) AS INTEGER), 1) + (CAST(substr((accounts.traits ->> 'trial_ends_on'), 9, 2) AS INTEGER) - 1), 'YYYY-MM-DD') = (accounts.traits ->> 'trial_ends_on') THEN CAST((accounts.traits ->> 'trial_ends_on') AS DATE) END END <= '2026-11-30') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'trial-ending-low-adoption' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active')))

-- goal
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'subscription_started' AND events.occurred_at > enrollments.enrolled_at AND events.occurred_at <= '2026-11-23 09:00:00'))
