SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT contacts.id AS subject_id, contacts.account_id AS account_id, '' AS trigger_key 
FROM contacts JOIN accounts ON accounts.id = contacts.account_id 
WHERE contacts.id IN (SELECT events.contact_id 
FROM events 
WHERE events.contact_id IS NOT NULL AND events.name = 'login' AND events.occurred_at <= '2026-11-23 09:00:00' GROUP BY events.contact_id 
HAVING min(events.occurred_at) > '2026-11-22 09:00:00')) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-experiment-arms' AND enrollments.subject_type = 'contact' AND enrollments.subject_id = occurrences.subject_id AND true))
