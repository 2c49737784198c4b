//! What PostgreSQL exposes beyond the relations a grant governs: the one list of built-in
//! functions and catalog relations that reach other sessions, statistics values, server files
//! and configuration, credentials, raw storage, or the server itself.
//!
//! Deny by default. Every function whose name starts with `pg_` and every relation in
//! `pg_catalog` or `information_schema` is either on a reviewed list here (harmless: names,
//! definitions, this session's own state) or sensitive; one that is on no list (a PostgreSQL
//! version newer than the one the lists were made from) is [`FunctionRisk::Unreviewed`], which
//! is sensitive too. A sensitive function or relation passes only when a grant names it exactly
//! (no wildcard), like the other dangerous functions. The lists were made from PostgreSQL 15's
//! `pg_proc` and `pg_class`; `crates/vigil/tests/adversarial_channels.rs` reads a live catalog
//! and fails when one of its functions or relations is unreviewed.
//!
//! Names are matched in any schema: a look-alike elsewhere (an extension's `public.pg_stats_x`,
//! a wrapper called `pg_stat_get_activity`) is treated as the built-in, which is the safe side.
//! Relations are matched by name in `pg_catalog`, `information_schema` and any schema an
//! extension may put them in (`pg_stat_statements` lives where it was installed).

use super::FunctionRisk;

use FunctionRisk as R;

/// Functions that are sensitive by exact name (checked first).
const SENSITIVE_FUNCTIONS: &[(&str, FunctionRisk)] = &[
    // Server files and configuration files.
    ("pg_stat_file", R::FileSystem),
    ("pg_current_logfile", R::FileSystem),
    ("pg_file_write", R::FileSystem),
    ("pg_file_rename", R::FileSystem),
    ("pg_file_unlink", R::FileSystem),
    ("pg_file_sync", R::FileSystem),
    ("pg_logdir_ls", R::FileSystem),
    ("pg_show_all_file_settings", R::FileSystem),
    ("pg_hba_file_rules", R::FileSystem),
    ("pg_ident_file_mappings", R::FileSystem),
    ("pg_config", R::FileSystem),
    ("lo_import", R::FileSystem),
    ("lo_export", R::FileSystem),
    // Large objects: data outside any relation.
    ("loread", R::LargeObject),
    ("lowrite", R::LargeObject),
    // Other sessions: their statements, backends, locks, waits, transactions, progress.
    ("pg_stat_get_activity", R::OtherSessions),
    ("pg_stat_get_progress_info", R::OtherSessions),
    ("pg_stat_get_wal_senders", R::OtherSessions),
    ("pg_stat_get_wal_receiver", R::OtherSessions),
    ("pg_stat_get_subscription", R::OtherSessions),
    ("pg_blocking_pids", R::OtherSessions),
    ("pg_safe_snapshot_blocking_pids", R::OtherSessions),
    ("pg_isolation_test_session_is_blocked", R::OtherSessions),
    ("pg_lock_status", R::OtherSessions),
    ("pg_prepared_xact", R::OtherSessions),
    ("pgrowlocks", R::OtherSessions),
    // Statistics values: most-common values and histograms are real column values.
    ("pg_mcv_list_items", R::Statistics),
    // Replication slots and origins.
    ("pg_get_replication_slots", R::Replication),
    ("pg_show_replication_origin_status", R::Replication),
    ("pg_stat_get_replication_slot", R::Replication),
    ("pg_replication_slot_advance", R::Replication),
    ("pg_logical_emit_message", R::Replication),
    // The server itself.
    ("pg_terminate_backend", R::ServerControl),
    ("pg_cancel_backend", R::ServerControl),
    ("pg_reload_conf", R::ServerControl),
    ("pg_rotate_logfile", R::ServerControl),
    ("pg_rotate_logfile_old", R::ServerControl),
    ("pg_promote", R::ServerControl),
    ("pg_switch_wal", R::ServerControl),
    ("pg_create_restore_point", R::ServerControl),
    ("pg_backup_start", R::ServerControl),
    ("pg_backup_stop", R::ServerControl),
    ("pg_start_backup", R::ServerControl),
    ("pg_stop_backup", R::ServerControl),
    ("pg_wal_replay_pause", R::ServerControl),
    ("pg_wal_replay_resume", R::ServerControl),
    ("pg_log_backend_memory_contexts", R::ServerControl),
    ("pg_import_system_collations", R::ServerControl),
    ("pg_nextoid", R::ServerControl),
    ("pg_stop_making_pinned_objects", R::ServerControl),
    ("pg_stat_statements_reset", R::ServerControl),
    ("pg_truncate_visibility_map", R::ServerControl),
    ("heap_force_kill", R::ServerControl),
    ("heap_force_freeze", R::ServerControl),
    // Settings by value (`search_path`, `role`…).
    ("set_config", R::Configuration),
    // SQL given as text, or whole relations named by value.
    ("query_to_xml", R::DynamicSql),
    ("query_to_xmlschema", R::DynamicSql),
    ("query_to_xml_and_xmlschema", R::DynamicSql),
    ("cursor_to_xml", R::DynamicSql),
    ("cursor_to_xmlschema", R::DynamicSql),
    ("table_to_xml", R::DynamicSql),
    ("table_to_xmlschema", R::DynamicSql),
    ("table_to_xml_and_xmlschema", R::DynamicSql),
    ("schema_to_xml", R::DynamicSql),
    ("schema_to_xmlschema", R::DynamicSql),
    ("schema_to_xml_and_xmlschema", R::DynamicSql),
    ("database_to_xml", R::DynamicSql),
    ("database_to_xmlschema", R::DynamicSql),
    ("database_to_xml_and_xmlschema", R::DynamicSql),
    ("ts_stat", R::DynamicSql),
    ("ts_rewrite", R::DynamicSql),
    ("xpath_table", R::DynamicSql),
    // Sends data to other sessions.
    ("pg_notify", R::Notification),
    // Table pages and WAL read directly (pageinspect, pg_walinspect): every row, unmasked.
    ("get_raw_page", R::RawStorage),
    ("page_header", R::RawStorage),
    ("page_checksum", R::RawStorage),
    ("heap_page_items", R::RawStorage),
    ("heap_page_item_attrs", R::RawStorage),
    ("heap_tuple_infomask_flags", R::RawStorage),
    ("tuple_data_split", R::RawStorage),
    ("fsm_page_contents", R::RawStorage),
    ("bt_metap", R::RawStorage),
    ("bt_page_stats", R::RawStorage),
    ("bt_page_items", R::RawStorage),
    ("brin_page_type", R::RawStorage),
    ("brin_metapage_info", R::RawStorage),
    ("brin_revmap_data", R::RawStorage),
    ("brin_page_items", R::RawStorage),
    ("gin_metapage_info", R::RawStorage),
    ("gin_page_opaque_info", R::RawStorage),
    ("gin_leafpage_items", R::RawStorage),
    ("gist_page_opaque_info", R::RawStorage),
    ("gist_page_items", R::RawStorage),
    ("gist_page_items_bytea", R::RawStorage),
    ("hash_page_type", R::RawStorage),
    ("hash_page_stats", R::RawStorage),
    ("hash_page_items", R::RawStorage),
    ("hash_bitmap_info", R::RawStorage),
    ("hash_metapage_info", R::RawStorage),
    ("pg_get_wal_record_info", R::RawStorage),
    ("pg_get_wal_records_info", R::RawStorage),
    ("pg_get_wal_records_info_till_end_of_wal", R::RawStorage),
    ("pg_get_wal_stats", R::RawStorage),
    ("pg_get_wal_stats_till_end_of_wal", R::RawStorage),
];

/// Families by prefix (checked after the exact lists; the longest prefix that matches wins).
const SENSITIVE_PREFIXES: &[(&str, FunctionRisk)] = &[
    ("pg_read_", R::FileSystem),
    ("pg_ls_", R::FileSystem),
    ("pg_control_", R::FileSystem),
    ("lo_", R::LargeObject),
    ("dblink", R::RemoteDatabase),
    ("pg_stat_get_backend_", R::OtherSessions),
    ("pg_stat_statements", R::OtherSessions),
    // Counters of what the server and every session did (per table, index, function,
    // database, WAL, archiver…). Not values, but other identities' activity: a grant that
    // wants them names them.
    ("pg_stat_get_", R::ServerActivity),
    ("pg_stat_reset", R::ServerControl),
    ("binary_upgrade_", R::ServerControl),
    ("pg_logical_slot_", R::Replication),
    ("pg_replication_origin_", R::Replication),
];

/// Families by suffix.
const SENSITIVE_SUFFIXES: &[(&str, FunctionRisk)] = &[("_replication_slot", R::Replication)];

/// Reviewed and harmless although their names are in a family above (checked before the
/// prefixes): this session's own transaction's counters.
const REVIEWED_PREFIXES: &[&str] = &["pg_stat_get_xact_"];

/// `pg_*` functions reviewed and found harmless: names and definitions of objects, sizes, this
/// session's own state, types' I/O, arithmetic on WAL positions and transaction ids.
///
/// Decisions worth knowing: advisory locks, `pg_notification_queue_usage` and the transaction
/// status functions can carry a few bits between *cooperating* identities (a covert channel),
/// never data one identity did not choose to send; two identities that want to share data can
/// already do so through any table both may write. `pg_show_all_settings` (`pg_settings`) shows
/// this session's settings (custom settings other sessions set are theirs alone).
/// `pg_get_backend_memory_contexts` is this backend's own (one upstream connection per
/// session). `pg_sequence_last_value` reads a sequence named by value, like `nextval`.
const REVIEWED_FUNCTIONS: &[&str] = &[
    // Advisory locks (see above).
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    // Extensions available on the server (control files in the share directory).
    "pg_available_extension_versions",
    "pg_available_extensions",
    "pg_extension_config_dump",
    "pg_extension_update_paths",
    // This session.
    "pg_backend_pid",
    "pg_client_encoding",
    "pg_cursor",
    "pg_prepared_statement",
    "pg_listening_channels",
    "pg_my_temp_schema",
    "pg_is_other_temp_schema",
    "pg_trigger_depth",
    "pg_get_backend_memory_contexts",
    "pg_show_all_settings",
    "pg_settings_get_flags",
    "pg_stat_clear_snapshot",
    "pg_stat_force_next_flush",
    "pg_stat_have_stats",
    "pg_stat_get_snapshot_timestamp",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_notification_queue_usage",
    // Encodings, collations, types, visibility, properties.
    "pg_char_to_encoding",
    "pg_encoding_to_char",
    "pg_encoding_max_length",
    "pg_collation_actual_version",
    "pg_database_collation_actual_version",
    "pg_collation_for",
    "pg_collation_is_visible",
    "pg_conversion_is_visible",
    "pg_function_is_visible",
    "pg_opclass_is_visible",
    "pg_operator_is_visible",
    "pg_opfamily_is_visible",
    "pg_statistics_obj_is_visible",
    "pg_table_is_visible",
    "pg_ts_config_is_visible",
    "pg_ts_dict_is_visible",
    "pg_ts_parser_is_visible",
    "pg_ts_template_is_visible",
    "pg_type_is_visible",
    "pg_typeof",
    "pg_index_column_has_property",
    "pg_index_has_property",
    "pg_indexam_has_property",
    "pg_indexam_progress_phasename",
    "pg_column_is_updatable",
    "pg_relation_is_updatable",
    "pg_relation_is_publishable",
    "pg_has_role",
    "pg_jit_available",
    "pg_options_to_table",
    // Definitions and names of objects (what psql's \d shows).
    "pg_describe_object",
    "pg_identify_object",
    "pg_identify_object_as_address",
    "pg_get_object_address",
    "pg_get_catalog_foreign_keys",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_function_arg_default",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_function_sqlbody",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_keywords",
    "pg_get_partition_constraintdef",
    "pg_get_partkeydef",
    "pg_get_publication_tables",
    "pg_get_replica_identity_index",
    "pg_get_ruledef",
    "pg_get_serial_sequence",
    "pg_get_statisticsobjdef",
    "pg_get_statisticsobjdef_columns",
    "pg_get_statisticsobjdef_expressions",
    "pg_get_triggerdef",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_partition_ancestors",
    "pg_partition_root",
    "pg_partition_tree",
    "pg_event_trigger_ddl_commands",
    "pg_event_trigger_dropped_objects",
    "pg_event_trigger_table_rewrite_oid",
    "pg_event_trigger_table_rewrite_reason",
    // Sizes and storage locations (paths, not contents).
    "pg_column_compression",
    "pg_column_size",
    "pg_database_size",
    "pg_indexes_size",
    "pg_relation_size",
    "pg_table_size",
    "pg_total_relation_size",
    "pg_tablespace_size",
    "pg_tablespace_databases",
    "pg_tablespace_location",
    "pg_relation_filenode",
    "pg_relation_filepath",
    "pg_filenode_relation",
    "pg_size_bytes",
    "pg_size_pretty",
    "pg_sequence_last_value",
    "pg_sequence_parameters",
    // Server state without data.
    "pg_conf_load_time",
    "pg_postmaster_start_time",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_get_wal_replay_pause_state",
    "pg_get_wal_resource_managers",
    "pg_get_shmem_allocations",
    "pg_timezone_abbrevs",
    "pg_timezone_names",
    // WAL positions and transaction ids (see above).
    "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_wal_lsn_diff",
    "pg_walfile_name",
    "pg_walfile_name_offset",
    "pg_current_snapshot",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_export_snapshot",
    "pg_visible_in_snapshot",
    "pg_last_committed_xact",
    "pg_xact_commit_timestamp",
    "pg_xact_commit_timestamp_origin",
    "pg_xact_status",
    "pg_get_multixact_members",
    // Types' input/output and operators.
    "pg_lsn",
    "pg_lsn_cmp",
    "pg_lsn_eq",
    "pg_lsn_ge",
    "pg_lsn_gt",
    "pg_lsn_hash",
    "pg_lsn_hash_extended",
    "pg_lsn_in",
    "pg_lsn_larger",
    "pg_lsn_le",
    "pg_lsn_lt",
    "pg_lsn_mi",
    "pg_lsn_mii",
    "pg_lsn_ne",
    "pg_lsn_out",
    "pg_lsn_pli",
    "pg_lsn_recv",
    "pg_lsn_send",
    "pg_lsn_smaller",
    "pg_snapshot_in",
    "pg_snapshot_out",
    "pg_snapshot_recv",
    "pg_snapshot_send",
    "pg_snapshot_xip",
    "pg_snapshot_xmax",
    "pg_snapshot_xmin",
    "pg_ddl_command_in",
    "pg_ddl_command_out",
    "pg_ddl_command_recv",
    "pg_ddl_command_send",
    "pg_node_tree_in",
    "pg_node_tree_out",
    "pg_node_tree_recv",
    "pg_node_tree_send",
    // Statistics types' I/O: their values come only from pg_statistic_ext_data (sensitive).
    "pg_dependencies_in",
    "pg_dependencies_out",
    "pg_dependencies_recv",
    "pg_dependencies_send",
    "pg_ndistinct_in",
    "pg_ndistinct_out",
    "pg_ndistinct_recv",
    "pg_ndistinct_send",
    "pg_mcv_list_in",
    "pg_mcv_list_out",
    "pg_mcv_list_recv",
    "pg_mcv_list_send",
];

/// Relations sensitive by name, in whatever schema.
const SENSITIVE_RELATIONS: &[(&str, FunctionRisk)] = &[
    // Other sessions.
    ("pg_stat_activity", R::OtherSessions),
    ("pg_locks", R::OtherSessions),
    ("pg_prepared_xacts", R::OtherSessions),
    ("pg_stat_ssl", R::OtherSessions),
    ("pg_stat_gssapi", R::OtherSessions),
    ("pg_stat_progress_analyze", R::OtherSessions),
    ("pg_stat_progress_basebackup", R::OtherSessions),
    ("pg_stat_progress_cluster", R::OtherSessions),
    ("pg_stat_progress_copy", R::OtherSessions),
    ("pg_stat_progress_create_index", R::OtherSessions),
    ("pg_stat_progress_vacuum", R::OtherSessions),
    ("pg_stat_statements", R::OtherSessions),
    ("pg_stat_statements_info", R::OtherSessions),
    // Replication.
    ("pg_stat_replication", R::Replication),
    ("pg_stat_wal_receiver", R::Replication),
    ("pg_stat_subscription", R::Replication),
    ("pg_replication_slots", R::Replication),
    ("pg_stat_replication_slots", R::Replication),
    ("pg_replication_origin", R::Replication),
    ("pg_replication_origin_status", R::Replication),
    // Statistics values.
    ("pg_stats", R::Statistics),
    ("pg_stats_ext", R::Statistics),
    ("pg_stats_ext_exprs", R::Statistics),
    ("pg_statistic", R::Statistics),
    ("pg_statistic_ext_data", R::Statistics),
    // Activity counters.
    ("pg_stat_all_indexes", R::ServerActivity),
    ("pg_stat_all_tables", R::ServerActivity),
    ("pg_stat_archiver", R::ServerActivity),
    ("pg_stat_bgwriter", R::ServerActivity),
    ("pg_stat_database", R::ServerActivity),
    ("pg_stat_database_conflicts", R::ServerActivity),
    ("pg_stat_recovery_prefetch", R::ServerActivity),
    ("pg_stat_slru", R::ServerActivity),
    ("pg_stat_subscription_stats", R::ServerActivity),
    ("pg_stat_sys_indexes", R::ServerActivity),
    ("pg_stat_sys_tables", R::ServerActivity),
    ("pg_stat_user_functions", R::ServerActivity),
    ("pg_stat_user_indexes", R::ServerActivity),
    ("pg_stat_user_tables", R::ServerActivity),
    ("pg_stat_wal", R::ServerActivity),
    ("pg_statio_all_indexes", R::ServerActivity),
    ("pg_statio_all_sequences", R::ServerActivity),
    ("pg_statio_all_tables", R::ServerActivity),
    ("pg_statio_sys_indexes", R::ServerActivity),
    ("pg_statio_sys_sequences", R::ServerActivity),
    ("pg_statio_sys_tables", R::ServerActivity),
    ("pg_statio_user_indexes", R::ServerActivity),
    ("pg_statio_user_sequences", R::ServerActivity),
    ("pg_statio_user_tables", R::ServerActivity),
    // Server files and configuration files.
    ("pg_file_settings", R::FileSystem),
    ("pg_hba_file_rules", R::FileSystem),
    ("pg_ident_file_mappings", R::FileSystem),
    ("pg_config", R::FileSystem),
    // Per-role and per-database settings (custom settings may hold secrets).
    ("pg_db_role_setting", R::Configuration),
    // Credentials: password hashes, user mappings' options, subscriptions' connection strings.
    ("pg_authid", R::Credentials),
    ("pg_shadow", R::Credentials),
    ("pg_user_mapping", R::Credentials),
    ("pg_user_mappings", R::Credentials),
    ("_pg_user_mappings", R::Credentials),
    ("user_mapping_options", R::Credentials),
    ("pg_subscription", R::Credentials),
    // Large objects' data.
    ("pg_largeobject", R::LargeObject),
];

/// Relations of `pg_catalog` reviewed and found harmless: the system catalogs that hold
/// definitions and names (psql's `\d`, drivers' type lookups), and views of this session's own
/// state (`pg_cursors`, `pg_prepared_statements`, `pg_settings`, `pg_stat_xact_*`,
/// `pg_backend_memory_contexts`). `pg_roles`, `pg_user` and `pg_group` show passwords as
/// `********`.
const REVIEWED_CATALOG_RELATIONS: &[&str] = &[
    "pg_aggregate",
    "pg_am",
    "pg_amop",
    "pg_amproc",
    "pg_attrdef",
    "pg_attribute",
    "pg_auth_members",
    "pg_available_extension_versions",
    "pg_available_extensions",
    "pg_backend_memory_contexts",
    "pg_cast",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_conversion",
    "pg_cursors",
    "pg_database",
    "pg_default_acl",
    "pg_depend",
    "pg_description",
    "pg_enum",
    "pg_event_trigger",
    "pg_extension",
    "pg_foreign_data_wrapper",
    "pg_foreign_server",
    "pg_foreign_table",
    "pg_group",
    "pg_index",
    "pg_indexes",
    "pg_inherits",
    "pg_init_privs",
    "pg_language",
    "pg_largeobject_metadata",
    "pg_matviews",
    "pg_namespace",
    "pg_opclass",
    "pg_operator",
    "pg_opfamily",
    "pg_parameter_acl",
    "pg_partitioned_table",
    "pg_policies",
    "pg_policy",
    "pg_prepared_statements",
    "pg_proc",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_publication_tables",
    "pg_range",
    "pg_rewrite",
    "pg_roles",
    "pg_rules",
    "pg_seclabel",
    "pg_seclabels",
    "pg_sequence",
    "pg_sequences",
    "pg_settings",
    "pg_shdepend",
    "pg_shdescription",
    "pg_shmem_allocations",
    "pg_shseclabel",
    "pg_stat_xact_all_tables",
    "pg_stat_xact_sys_tables",
    "pg_stat_xact_user_functions",
    "pg_stat_xact_user_tables",
    "pg_statistic_ext",
    "pg_subscription_rel",
    "pg_tables",
    "pg_tablespace",
    "pg_timezone_abbrevs",
    "pg_timezone_names",
    "pg_transform",
    "pg_trigger",
    "pg_ts_config",
    "pg_ts_config_map",
    "pg_ts_dict",
    "pg_ts_parser",
    "pg_ts_template",
    "pg_type",
    "pg_user",
    "pg_views",
];

/// Relations of `information_schema` reviewed and found harmless: the SQL standard's views of
/// definitions and privileges, built over the system catalogs. (`user_mapping_options` and
/// `_pg_user_mappings`, which hold user mappings' options, are sensitive.)
const REVIEWED_INFORMATION_SCHEMA: &[&str] = &[
    "_pg_foreign_data_wrappers",
    "_pg_foreign_servers",
    "_pg_foreign_table_columns",
    "_pg_foreign_tables",
    "administrable_role_authorizations",
    "applicable_roles",
    "attributes",
    "character_sets",
    "check_constraint_routine_usage",
    "check_constraints",
    "collation_character_set_applicability",
    "collations",
    "column_column_usage",
    "column_domain_usage",
    "column_options",
    "column_privileges",
    "column_udt_usage",
    "columns",
    "constraint_column_usage",
    "constraint_table_usage",
    "data_type_privileges",
    "domain_constraints",
    "domain_udt_usage",
    "domains",
    "element_types",
    "enabled_roles",
    "foreign_data_wrapper_options",
    "foreign_data_wrappers",
    "foreign_server_options",
    "foreign_servers",
    "foreign_table_options",
    "foreign_tables",
    "information_schema_catalog_name",
    "key_column_usage",
    "parameters",
    "referential_constraints",
    "role_column_grants",
    "role_routine_grants",
    "role_table_grants",
    "role_udt_grants",
    "role_usage_grants",
    "routine_column_usage",
    "routine_privileges",
    "routine_routine_usage",
    "routine_sequence_usage",
    "routine_table_usage",
    "routines",
    "schemata",
    "sequences",
    "sql_features",
    "sql_implementation_info",
    "sql_parts",
    "sql_sizing",
    "table_constraints",
    "table_privileges",
    "tables",
    "transforms",
    "triggered_update_columns",
    "triggers",
    "udt_privileges",
    "usage_privileges",
    "user_defined_types",
    "user_mappings",
    "view_column_usage",
    "view_routine_usage",
    "view_table_usage",
    "views",
];

/// The risk of calling a function named `name` (in any schema), `None` when it has none.
pub fn function_risk(name: &str) -> Option<FunctionRisk> {
    if let Some((_, risk)) = SENSITIVE_FUNCTIONS.iter().find(|(n, _)| *n == name) {
        return Some(*risk);
    }
    if REVIEWED_FUNCTIONS.contains(&name) || REVIEWED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let by_prefix = SENSITIVE_PREFIXES
        .iter()
        .filter(|(p, _)| name.starts_with(p))
        .max_by_key(|(p, _)| p.len());
    if let Some((_, risk)) = by_prefix {
        return Some(*risk);
    }
    if let Some((_, risk)) = SENSITIVE_SUFFIXES.iter().find(|(s, _)| name.ends_with(s)) {
        return Some(*risk);
    }
    // PostgreSQL's own `pg_*` functions are reviewed one by one: a name on no list is one a
    // newer version added, and stays closed until it is reviewed.
    name.starts_with("pg_").then_some(R::Unreviewed)
}

/// The risk of reading relation `schema.name`, `None` when it has none: a sensitive name in any
/// schema, or a relation of `pg_catalog` or `information_schema` that is not reviewed.
pub fn relation_risk(schema: &str, name: &str) -> Option<FunctionRisk> {
    if let Some((_, risk)) = SENSITIVE_RELATIONS.iter().find(|(n, _)| *n == name) {
        return Some(*risk);
    }
    let reviewed = match schema {
        "pg_catalog" => REVIEWED_CATALOG_RELATIONS,
        "information_schema" => REVIEWED_INFORMATION_SCHEMA,
        _ => return None,
    };
    (!reviewed.contains(&name)).then_some(R::Unreviewed)
}

/// Whether a function of PostgreSQL's catalog belongs to the family reviewed one by one
/// (`pg_*`): the test over a live catalog requires every such function to be on a list.
pub fn in_function_family(name: &str) -> bool {
    name.starts_with("pg_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_sessions_statistics_files_and_credentials_are_sensitive() {
        for (name, risk) in [
            ("pg_stat_get_activity", R::OtherSessions),
            ("pg_stat_get_backend_activity", R::OtherSessions),
            ("pg_stat_get_backend_idset", R::OtherSessions),
            ("pg_stat_get_backend_pid", R::OtherSessions),
            ("pg_blocking_pids", R::OtherSessions),
            ("pg_lock_status", R::OtherSessions),
            ("pg_stat_statements", R::OtherSessions),
            ("pg_stat_statements_info", R::OtherSessions),
            ("pg_stat_statements_reset", R::ServerControl),
            ("pg_stat_get_numscans", R::ServerActivity),
            ("pg_stat_get_db_xact_commit", R::ServerActivity),
            ("pg_mcv_list_items", R::Statistics),
            ("pg_read_file", R::FileSystem),
            ("pg_read_file_old", R::FileSystem),
            ("pg_ls_waldir", R::FileSystem),
            ("pg_control_system", R::FileSystem),
            ("pg_hba_file_rules", R::FileSystem),
            ("pg_rotate_logfile_old", R::ServerControl),
            ("pg_stat_reset_shared", R::ServerControl),
            ("lo_get", R::LargeObject),
            ("lo_import", R::FileSystem),
            ("dblink_connect_u", R::RemoteDatabase),
            ("pg_create_logical_replication_slot", R::Replication),
            ("pg_logical_slot_peek_changes", R::Replication),
            ("heap_page_items", R::RawStorage),
            ("pg_get_wal_records_info", R::RawStorage),
            ("pgrowlocks", R::OtherSessions),
            ("xpath_table", R::DynamicSql),
            // A future PostgreSQL's function: closed until reviewed.
            ("pg_stat_get_io", R::ServerActivity),
            ("pg_get_wal_summarizer_state", R::Unreviewed),
            ("pg_sync_replication_slots", R::Unreviewed),
        ] {
            assert_eq!(function_risk(name), Some(risk), "{name}");
        }
        for name in [
            "pg_stat_get_xact_tuples_inserted",
            "pg_stat_get_snapshot_timestamp",
            "pg_table_is_visible",
            "pg_get_userbyid",
            "pg_backend_pid",
            "pg_advisory_lock",
            "pg_show_all_settings",
            "current_setting",
            "lower",
            "log",
            "txid_status",
        ] {
            assert_eq!(function_risk(name), None, "{name}");
        }
    }

    #[test]
    fn catalog_relations_are_deny_by_default() {
        for (schema, name, risk) in [
            ("pg_catalog", "pg_stat_activity", Some(R::OtherSessions)),
            ("pg_catalog", "pg_locks", Some(R::OtherSessions)),
            ("public", "pg_stat_statements", Some(R::OtherSessions)),
            ("pg_catalog", "pg_stats", Some(R::Statistics)),
            ("pg_catalog", "pg_statistic", Some(R::Statistics)),
            ("pg_catalog", "pg_authid", Some(R::Credentials)),
            (
                "information_schema",
                "user_mapping_options",
                Some(R::Credentials),
            ),
            ("pg_catalog", "pg_stat_user_tables", Some(R::ServerActivity)),
            ("pg_catalog", "pg_file_settings", Some(R::FileSystem)),
            // A future catalog relation.
            ("pg_catalog", "pg_stat_io", Some(R::Unreviewed)),
            ("information_schema", "something_new", Some(R::Unreviewed)),
            ("pg_catalog", "pg_class", None),
            ("pg_catalog", "pg_stat_xact_user_tables", None),
            ("information_schema", "columns", None),
            ("public", "patients", None),
        ] {
            assert_eq!(relation_risk(schema, name), risk, "{schema}.{name}");
        }
    }

    /// A reviewed name is never also sensitive (the exact list would win, but the two lists
    /// disagreeing is a mistake either way).
    #[test]
    fn the_lists_do_not_overlap() {
        for name in REVIEWED_FUNCTIONS {
            assert!(
                !SENSITIVE_FUNCTIONS.iter().any(|(n, _)| n == name),
                "{name} is on both lists"
            );
            assert!(in_function_family(name), "{name}");
            assert_eq!(function_risk(name), None, "{name}");
        }
        for name in REVIEWED_CATALOG_RELATIONS
            .iter()
            .chain(REVIEWED_INFORMATION_SCHEMA)
        {
            assert!(
                !SENSITIVE_RELATIONS.iter().any(|(n, _)| n == name),
                "{name} is on both lists"
            );
        }
    }
}
