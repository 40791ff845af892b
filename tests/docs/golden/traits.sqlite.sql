SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, CAST(accounts.contract_start AS VARCHAR) AS trigger_key 
FROM accounts 
WHERE CASE WHEN json_valid(accounts.traits) THEN JSON_EXTRACT(accounts.traits, '$."industry"') END IN ('saas', 'fintech') AND CASE WHEN json_valid(accounts.traits) THEN JSON_EXTRACT(accounts.traits, '$."region"') END = 'apac' AND accounts.contract_start > '2026-11-09' AND accounts.contract_start <= '2026-11-16') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-traits' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active')))
