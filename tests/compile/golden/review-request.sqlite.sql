SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-17T10:00:00' AS trigger_key 
FROM accounts 
WHERE accounts.status = 'active' AND CASE WHEN json_valid(accounts.traits) THEN CASE WHEN json_type(accounts.traits, '$."health_score"') IN ('integer', 'real') THEN json_extract(accounts.traits, '$."health_score"') END END > 85 AND NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'support_ticket_opened' AND events.occurred_at > '2026-10-24 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000')) AND NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'review_submitted' AND events.occurred_at > '2024-11-23 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'review-request' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2025-11-23 09:00:00.000000')))
