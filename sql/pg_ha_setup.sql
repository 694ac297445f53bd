-- The extension installs its functions; status is not for PUBLIC.
SELECT proname FROM pg_proc WHERE proname LIKE 'ha\_%' ORDER BY 1;
SELECT has_function_privilege('public', 'ha_status()', 'EXECUTE') AS public_can_read_status,
       has_function_privilege('pg_monitor', 'ha_status()', 'EXECUTE') AS monitor_can_read_status;
