SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, CAST(events.id AS VARCHAR) AS trigger_key 
FROM accounts JOIN events ON events.account_id = accounts.id 
WHERE events.name = 'invoice_overdue' AND events.occurred_at > '2026-11-22 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-concurrent-entry' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND enrollments.trigger_key = occurrences.trigger_key))
