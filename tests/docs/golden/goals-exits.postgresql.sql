SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, '2026-11-23' AS trigger_key 
FROM accounts 
WHERE NOT (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'login' AND events.occurred_at > '2026-10-24 09:00:00' AND events.occurred_at <= '2026-11-23 09:00:00'))) AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-goals-exits' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active' OR enrollments.enrolled_at > '2026-08-25 09:00:00')))

-- goal
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'login' AND events.occurred_at > enrollments.enrolled_at AND events.occurred_at <= '2026-11-23 09:00:00' AND events.occurred_at <= (enrollments.enrolled_at + make_interval(secs => 2592000)) AND CAST((events.properties ->> 'client') AS VARCHAR) = 'web'))

-- exit
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND ((EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'support_ticket_opened' AND events.occurred_at > enrollments.enrolled_at AND events.occurred_at <= '2026-11-23 09:00:00' AND CAST((events.properties ->> 'severity') AS VARCHAR) = 'high')) OR accounts.status = 'churned')
