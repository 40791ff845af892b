SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, CAST(CASE WHEN json_valid(accounts.traits) THEN CASE WHEN json_type(accounts.traits, '$."trial_ends_on"') = 'text' AND date(julianday(json_extract(accounts.traits, '$."trial_ends_on"'))) IS json_extract(accounts.traits, '$."trial_ends_on"') AND substr(json_extract(accounts.traits, '$."trial_ends_on"'), 1, 4) <> '0000' THEN json_extract(accounts.traits, '$."trial_ends_on"') END END AS VARCHAR) AS trigger_key 
FROM accounts 
WHERE (accounts.id NOT IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.contact_id IS NOT NULL AND events.name = 'login' AND events.occurred_at > '2026-11-09 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' GROUP BY events.account_id 
HAVING count(DISTINCT events.contact_id) > 2)) AND CASE WHEN json_valid(accounts.traits) THEN CASE WHEN json_type(accounts.traits, '$."trial_ends_on"') = 'text' AND date(julianday(json_extract(accounts.traits, '$."trial_ends_on"'))) IS json_extract(accounts.traits, '$."trial_ends_on"') AND substr(json_extract(accounts.traits, '$."trial_ends_on"'), 1, 4) <> '0000' THEN json_extract(accounts.traits, '$."trial_ends_on"') END END > '2026-11-23' AND CASE WHEN json_valid(accounts.traits) THEN CASE WHEN json_type(accounts.traits, '$."trial_ends_on"') = 'text' AND date(julianday(json_extract(accounts.traits, '$."trial_ends_on"'))) IS json_extract(accounts.traits, '$."trial_ends_on"') AND substr(json_extract(accounts.traits, '$."trial_ends_on"'), 1, 4) <> '0000' THEN json_extract(accounts.traits, '$."trial_ends_on"') END END <= '2026-11-30') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'trial-ending-low-adoption' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active')))

-- goal
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'subscription_started' AND events.occurred_at > enrollments.enrolled_at AND events.occurred_at <= '2026-11-23 09:00:00.000000'))
