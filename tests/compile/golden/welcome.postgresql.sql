SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, to_char(accounts.contract_start, 'YYYY-MM-DD') AS trigger_key 
FROM accounts 
WHERE accounts.status = 'active' AND accounts.contract_start > '2026-11-20' AND accounts.contract_start <= '2026-11-23') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'welcome' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active')))
