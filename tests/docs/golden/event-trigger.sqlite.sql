SELECT accounts.id AS subject_id, accounts.id AS account_id, min(CAST(events.id AS VARCHAR)) AS trigger_key 
FROM accounts JOIN events ON events.account_id = accounts.id 
WHERE events.name = 'nps_response' AND events.occurred_at > '2026-11-21 09:00:00.000000' AND events.occurred_at <= '2026-11-23 09:00:00.000000' AND JSON_EXTRACT(events.properties, '$."score"') <= 6 AND NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-event-trigger' AND enrollments.subject_type = 'account' AND enrollments.subject_id = accounts.id AND (enrollments.trigger_key = CAST(events.id AS VARCHAR) OR enrollments.status = 'active'))) GROUP BY accounts.id, accounts.id
