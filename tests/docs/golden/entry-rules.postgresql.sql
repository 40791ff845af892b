SELECT occurrences.subject_id, occurrences.account_id, occurrences.trigger_key 
FROM (SELECT contacts.id AS subject_id, contacts.account_id AS account_id, to_char(accounts.renewal_date, 'YYYY-MM-DD') AS trigger_key 
FROM contacts JOIN accounts ON accounts.id = contacts.account_id 
WHERE contacts.role IN ('admin', 'champion') AND accounts.renewal_date > '2026-12-16' AND accounts.renewal_date <= '2026-12-23') AS occurrences 
WHERE NOT (EXISTS (SELECT * 
FROM enrollments 
WHERE enrollments.playbook_id = 'doc-entry-rules' AND enrollments.subject_type = 'contact' AND enrollments.subject_id = occurrences.subject_id AND true))
