SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23' AS trigger_key 
FROM accounts 
WHERE EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'security_alert' AND events.occurred_at > '2026-11-22 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000')) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-policy-caps' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-11-22 09:00:00.000000')))
