SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '' AS trigger_key 
FROM accounts 
WHERE (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'nps_response' AND events.occurred_at > '2026-10-24 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' AND CASE WHEN json_valid(events.properties) THEN CASE WHEN json_type(events.properties, '$."score"') IN ('integer', 'real') THEN json_extract(events.properties, '$."score"') END END <= 6)) AND (accounts.id NOT IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.name = 'page_view' AND events.occurred_at > '2026-11-16 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' GROUP BY events.account_id 
HAVING count(*) > 2)) AND accounts.id IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.name = 'login' AND events.occurred_at > '2026-11-09 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' AND events.contact_id IS NOT NULL GROUP BY events.account_id, events.contact_id 
HAVING count(*) >= 3) AND NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'login' AND events.occurred_at > '2026-11-09 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-event-window' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active')))
