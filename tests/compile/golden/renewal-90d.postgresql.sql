SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT accounts.id AS subject_id, accounts.id AS account_id, to_char(accounts.renewal_date, 'YYYY-MM-DD') AS trigger_key 
FROM accounts 
WHERE accounts.status = 'active' AND accounts.tier IN ('low_touch', 'tech_touch') AND accounts.renewal_date > '2027-02-14' AND accounts.renewal_date <= '2027-02-21') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'renewal-90d' AND enrollments.subject_type = 'account' AND enrollments.subject_id = occurrences.subject_id AND (enrollments.trigger_key = occurrences.trigger_key OR enrollments.status = 'active')))
