SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, CAST(accounts.contract_start AS VARCHAR) AS trigger_key 
FROM accounts 
WHERE accounts.tier = 'tech_touch' AND accounts.contract_start > '2026-11-02' AND accounts.contract_start <= '2026-11-09') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-top-level' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND 1 = 1))

-- goal
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'activation_completed' AND events.occurred_at > enrollments.enrolled_at AND events.occurred_at <= '2026-11-23 09:00:00.000000' AND events.occurred_at <= strftime('%Y-%m-%d %H:%M:%f000', enrollments.enrolled_at, '+2592000 seconds')))

-- exit
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND accounts.status != 'active'
