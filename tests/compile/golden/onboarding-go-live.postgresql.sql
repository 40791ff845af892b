SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '' AS trigger_key 
FROM accounts 
WHERE accounts.status = 'active' AND accounts.lifecycle_stage = 'onboarding' AND accounts.contract_start < '2026-09-28' AND NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'go_live' AND events.occurred_at > '2025-11-23 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'onboarding-go-live' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND true))
