SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT contacts.id AS subject_id, contacts.account_id AS account_id, '' AS trigger_key 
FROM contacts JOIN accounts ON accounts.id = contacts.account_id 
WHERE contacts.id IN (SELECT events.contact_id 
FROM events 
WHERE events.contact_id IS NOT NULL AND events.name = 'login' AND events.occurred_at <= '2026-11-23 09:00:00' GROUP BY events.contact_id 
HAVING min(events.occurred_at) > '2026-11-09 09:00:00' AND min(events.occurred_at) < '2026-11-16 09:00:00') AND contacts.id IN (SELECT events.contact_id 
FROM events 
WHERE events.contact_id IS NOT NULL AND events.name = 'page_view' AND events.occurred_at <= '2026-11-23 09:00:00' GROUP BY events.contact_id 
HAVING max(events.occurred_at) < '2026-11-20 09:00:00')) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-occurrence' AND enrollments.subject_type = 'contact' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active')))
