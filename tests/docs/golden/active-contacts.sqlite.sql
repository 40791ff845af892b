SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23' AS trigger_key 
FROM accounts 
WHERE accounts.id IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.contact_id IS NOT NULL AND events.name = 'login' AND events.occurred_at > '2026-10-24 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' GROUP BY events.account_id 
HAVING count(DISTINCT events.contact_id) >= 1) AND (accounts.id NOT IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.contact_id IS NOT NULL AND events.name = 'feature_used' AND events.occurred_at > '2026-11-09 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' AND CASE WHEN json_valid(events.properties) THEN JSON_EXTRACT(events.properties, '$."feature"') END = 'reports' GROUP BY events.account_id 
HAVING count(DISTINCT events.contact_id) > 2))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-active-contacts' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-10-24 09:00:00.000000')))
