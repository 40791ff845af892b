SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, to_char(accounts.contract_start, 'YYYY-MM-DD') AS trigger_key 
FROM accounts 
WHERE accounts.tier = 'tech_touch' AND accounts.contract_start > '2026-11-02' AND accounts.contract_start <= '2026-11-09') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-top-level' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND true))

-- goal
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND (EXISTS (SELECT * 
FROM events 
WHERE events.account_id = accounts.id AND events.name = 'activation_completed' AND events.occurred_at > enrollments.enrolled_at AND events.occurred_at <= '2026-11-23 09:00:00' AND events.occurred_at <= (enrollments.enrolled_at + make_interval(secs => 2592000))))

-- exit
SELECT enrollments.id 
FROM enrollments JOIN accounts ON accounts.id = enrollments.subject_id 
WHERE enrollments.id IN (1, 2) AND accounts.status != 'active'
