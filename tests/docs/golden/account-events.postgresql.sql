SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT contacts.id AS subject_id, contacts.account_id AS account_id, '2026-11-23' AS trigger_key 
FROM contacts JOIN accounts ON accounts.id = contacts.account_id 
WHERE contacts.account_id IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.name = 'feature_used' AND events.occurred_at <= '2026-11-23 09:00:00' AND CAST((events.properties ->> 'feature') AS VARCHAR) = 'reports' GROUP BY events.account_id 
HAVING max(events.occurred_at) < '2026-10-24 09:00:00') AND NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = contacts.account_id AND events.name = 'export' AND events.occurred_at > '2026-10-24 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-account-events' AND enrollments.subject_type = 'contact' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-08-25 09:00:00')))
