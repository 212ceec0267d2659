//! The conformance suite every backend must pass: the same flows, the same answers.
//!
//! Each case is an `async fn(Store)` in the module of its area, given a fresh, empty store, so
//! cases cannot lean on each other. A backend's test file turns every case into its own test
//! with [`conformance_tests!`](crate::conformance_tests), so one failing case hides no other and
//! each can be run alone (`cargo test -p muster-store --test sqlite conformance::jobs::`).

pub mod audit;
mod fixtures;
pub mod identity;
pub mod jobs;
pub mod license;
pub mod pages;
pub mod replicas;
pub mod retention;
pub mod secret_enrollment;
pub mod sessions;
pub mod token_enrollment;
pub mod tokens;
pub mod transactions;
pub mod webhooks;
pub mod workers;

pub use fixtures::*;

/// Expands to one `#[tokio::test]` per conformance case, in modules named after the cases'
/// areas: `conformance::tokens::token_create_get_list` and so on.
///
/// `$fresh` names an `async fn() -> Option<(Store, impl Sized)>` in the module that invokes the
/// macro. Each test calls it once for a fresh, empty store; the second half of the pair is kept
/// alive until the case ends (a temporary directory, a schema to drop). `None` skips the case:
/// the function has already said why. The invoking crate needs `tokio` with its `macros` and
/// multi-threaded runtime.
///
/// ```text
/// async fn fresh_store() -> Option<(Store, tempfile::TempDir)> { ... }
/// muster_store::conformance_tests!(fresh_store);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:ident) => {
        $crate::__conformance_cases! { $fresh;
            tokens {
                token_create_get_list,
                token_names_are_unique_across_workers,
                revoke_token_transitions,
            }
            token_enrollment {
                enroll_binds_then_resumes_and_refuses_others,
                enroll_refuses_unknown_wrong_expired_revoked,
                racing_machines_exactly_one_wins,
            }
            secret_enrollment {
                secret_enrollment_settings_and_guard_rails,
                secret_enrollment_supersedes_only_when_allowed,
                secret_enrollment_never_takes_a_token_or_reserved_name,
            }
            workers {
                admit_checks_key_machine_and_binds_precreated,
                revoke_and_remove_workers,
                the_builtin_worker_is_neither_revoked_nor_removed,
                removing_a_worker_keeps_its_token_from_bringing_it_back,
                touch_keeps_the_latest,
            }
            identity {
                a_key_is_bound_once_and_tickets_tell_a_copy_from_a_restart,
                forgotten_tickets_let_a_restored_database_take_newer_ones,
                a_failed_unit_of_a_group_is_undone_alone,
                a_group_of_admissions_answers_each_as_alone,
                concurrent_groups_of_admissions_all_commit,
                a_confirmation_racing_the_next_admission_erases_no_ticket,
            }
            jobs {
                jobs_start_once_end_once_and_recover,
                job_output_is_stored_in_order,
                a_reporting_worker_takes_its_jobs_over_and_loses_the_rest,
            }
            audit {
                audit_filters,
                audit_by_worker,
            }
            replicas {
                presence_follows_the_newest_connection_and_lapsed_replicas_are_taken_over_once,
                workers_held_elsewhere_are_counted_by_label,
            }
            sessions {
                a_group_of_session_records_writes_what_each_alone_would,
            }
            pages {
                workers_page_in_name_order_with_every_filter,
                workers_page_in_every_order_either_way,
                tokens_page_oldest_first_by_effective_state,
                jobs_page_newest_first_past_ties,
                fleet_overview_counts_statuses_labels_and_hours,
            }
            retention {
                audit_is_pruned_oldest_first_in_batches,
                ended_jobs_are_pruned_with_their_output_and_live_ones_kept,
            }
            transactions {
                failed_write_rolls_back_alone,
                settings_round_trip,
            }
            webhooks {
                events_fan_out_to_the_webhooks_that_want_them,
                deliveries_roll_back_with_their_event,
                a_claimed_delivery_is_not_claimed_again_until_its_lease_ends,
                a_test_goes_to_one_webhook_and_removal_takes_the_log,
                the_stream_reads_records_after_a_seq,
                finished_deliveries_are_pruned,
                each_token_expiry_is_told_once,
            }
            license {
                community_edition_refuses_every_join_and_changes_nothing,
                the_trial_runs_once_per_fleet,
                an_installed_license_replaces_the_trial_until_removed,
                a_trial_is_refused_over_an_installed_license,
                seats_count_the_external_workers_that_can_still_connect,
                seats_are_judged_in_the_enrollment,
                a_license_past_its_grace_refuses_joins_but_not_workers_that_joined,
                a_refused_join_is_remembered_for_the_banner,
                concurrent_enrollments_never_exceed_the_seats,
            }
        }
    };
}

/// The expansion behind [`conformance_tests!`](crate::conformance_tests): the list of cases, by
/// area, is written once there.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($fresh:ident; $($area:ident { $($case:ident),* $(,)? })*) => {
        mod conformance {
            $(
                mod $area {
                    $(
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $case() {
                            let Some((store, _keep)) = super::super::$fresh().await else {
                                return;
                            };
                            $crate::testing::$area::$case(store).await;
                        }
                    )*
                }
            )*
        }
    };
}
