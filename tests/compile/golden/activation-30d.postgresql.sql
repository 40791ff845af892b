SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, to_char(accounts.contract_start, 'YYYY-MM-DD') AS trigger_key 
FROM accounts 
WHERE accounts.status = 'active' AND NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'feature_used' AND events.occurred_at > '2026-10-24 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00')) AND accounts.contract_start > '2026-10-21' AND accounts.contract_start <= '2026-10-24') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'activation-30d' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active')))
