SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23' AS trigger_key 
FROM accounts 
WHERE accounts.id IN (SELECT events.account_id 
FROM events 
WHERE events.account_id IS NOT NULL AND events.name = 'api_error' AND events.occurred_at > '2026-11-09 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00' AND CASE WHEN jsonb_typeof(events.properties -> 'status') = 'number' THEN CAST((events.properties ->> 'status') AS FLOAT) END >= 500 GROUP BY events.account_id 
HAVING sum(CASE WHEN (events.occurred_at <= '2026-11-16 09:00:00') THEN 1 ELSE 0 END) >= 10 AND sum(CASE WHEN (events.occurred_at > '2026-11-16 09:00:00') THEN 1 ELSE 0 END) * 100 >= sum(CASE WHEN (events.occurred_at <= '2026-11-16 09:00:00') THEN 1 ELSE 0 END) * 150.0)) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-trend-rise' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-10-24 09:00:00')))
