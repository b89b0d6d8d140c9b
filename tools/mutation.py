"""Mutation testing of jaxrec's core modules with mutmut, module by module, on the matching fast tests.

    python tools/mutation.py --list                      # the modules and the tests that guard them
    python tools/mutation.py core/prng                   # mutate jaxrec/core/prng.py, run its fast tests
    python tools/mutation.py core/prng --rev HEAD~5      # the same against an older commit's tests and code
    python tools/mutation.py core/prng --report          # the table of an earlier run; survivors with diffs
    python tools/mutation.py core/prng --ids 12,40       # retest these mutants (after new tests), whatever their status

Each module runs in its own scratch clone under ``.mutation/<module>/`` (git-ignored): mutmut edits
the file it mutates in place, so it never touches the working tree (or anyone's uncommitted work),
and it keeps its cache (``.mutmut-cache``) there, so a rerun only retests survivors and untested
mutants (mutmut assumes a killed mutant stays killed).  The clone holds the committed state of
``--rev`` (default ``HEAD``): commit the tests you want measured first.

Every mutant runs ``pytest -x -m "not slow or mutation"`` (:data:`SELECTION`: the fast tier, and the
slow tests marked ``mutation`` because they kill mutants no fast test kills) on the module's test
files (``MODULE_TESTS``), cheapest first, with a persistent JAX compilation cache so that functions
the mutant does not change are not recompiled.  mutmut's defaults come from ``[tool.mutmut]`` in ``pyproject.toml``; this script sets
the file to mutate and the runner.  Expect minutes per module on an idle 2-core machine for the
small modules and about an hour for the large ones: run it in the background before a release or
after changing a core module, not in CI.

``--in-process`` (much faster: 2-5 s per mutant instead of 20-40 s) tests mutmut's mutants of the
module in one Python process, without writing the clone's file: the mutants are registered in the
clone's mutmut cache, each is compiled and exec'd into the live module object, every other loaded
module's name bound to a function or class the module defines (``from module import f``) is rebound
to the mutant's, the test modules (``tests/*.py``) are imported afresh, and ``pytest.main`` runs
the same tests; the results go into the same cache (``--report`` reads them).  Caveats: what other
modules captured otherwise (a constant imported by value, a default argument, a value copied into a
table or a closure at import time, a ``jax.jit`` trace kept alive between test modules) still holds
the original code, so a survivor may be a mutant the tests never saw: every survivor is therefore
retested with the normal runner (``mutmut run <id>``, one process per mutant) unless
``--no-confirm`` (``--confirm`` retests the survivors such a pass left later, without rerunning the
in-process pass: commit the tests written for them first).  A kill is not rechecked, but the unmutated module must pass before and after the
pass (the coder registry is restored after each mutant: a mutated ``register_coder`` call registers
an entry under another name).  A mutant that breaks the module's import counts as killed; one whose tests run past
``--timeout`` seconds counts as timed out (one that hangs inside a compiled loop, where the alarm
cannot interrupt it, is recorded by a watchdog, and a new worker process goes on with the rest).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"

# The tests each mutant runs: the fast tier, and the slow tests that mutation runs still need
# (``@pytest.mark.mutation``: references that take seconds to compile, decisive for a module).
SELECTION = "not slow or mutation"
# f-strings here are error messages: mutmut wraps them in "XX...XX", which no test that matches a
# message's content (``pytest.raises(..., match=...)``, a search) can see
DISABLED_MUTATION_TYPES = ("fstring",)

# module (relative to jaxrec/, without .py) -> the fast test files (or ``file::test`` ids) that guard
# it, cheapest first
MODULE_TESTS: dict[str, tuple[str, ...]] = {
    "core/distributions": (  # test_distributions.py and the fast tests that reach the module (of 5 files)
        "test_distributions.py",
        "test_prng_arrivals.py::test_golden_first_candidates",
        "test_references.py::test_uniform_against_gaussian_sup_ratio_and_kl_match_numerics",
        "test_prng_arrivals.py::test_stream_log_ratio_matches_the_candidates",
        "test_partition.py::test_interval_sup_ratio_gauss_gauss_matches_a_grid",
        "test_partition.py::test_interval_sup_ratio_uniform_targets",
        "test_references.py::test_mmd2_to_gaussian_matches_quadrature",
        "test_invalid_arguments.py::test_kl_with_event_sizes_3_and_5_names_both",
        "test_invalid_arguments.py::test_distribution_parameters_are_checked_at_construction",
        "test_invalid_arguments.py::test_public_helpers_refuse_wrong_types",
        "test_invalid_arguments.py::test_distribution_constructors",
        "test_invalid_arguments.py::test_pair_quantities",
    ),
    "core/prng": (  # the fast tests of the module, the decisive ones first (test_contract.py is too slow per mutant)
        "test_prng_arrivals.py::test_golden_first_candidates",
        "test_prng_arrivals.py::test_fold_in_keys_and_bin_streams_follow_their_documented_derivations",
        "test_prng_arrivals.py::test_labelled_bin_streams_follow_their_documented_derivation",
        "test_prng_arrivals.py::test_each_seed_form_is_accepted_in_range_and_refused_outside_it",
        "test_prng_arrivals.py::test_threefry_matches_jax_primitive",
        "test_prng_arrivals.py::test_counter_words_layout_and_sum_over_words",
        "test_prng_arrivals.py::test_sum_over_words_passes_each_word_index_once",
        "test_prng_arrivals.py::test_as_key_accepts_seeds_keys_and_key_data_and_refuses_the_rest",
        "test_prng_arrivals.py::test_candidate_stream_marginals_and_independence",
        "test_prng_arrivals.py::test_candidates_are_pure_functions_of_the_index",
        "test_prng_arrivals.py::test_stream_log_ratio_matches_the_candidates",
        "test_sp.py::test_bin_candidates_are_pinned_and_score_as_the_fused_log_ratio",
    ),
    "core/arrivals": (  # every fast test that reaches the module, the decisive ones first
        "test_prng_arrivals.py::test_arrival_times_are_exact_and_chunk_invariant",
        "test_prng_arrivals.py::test_arrival_times_stay_accurate_past_2_pow_24",
        "test_prng_arrivals.py::test_increments_at_the_ends_of_the_word_range",
        "test_references.py::test_arrival_sums_are_exact_for_the_largest_chunk_and_larger_chunks_are_refused",
        "test_references.py::test_pfr_index_and_steps_equal_a_sequential_reference",
        "test_prng_arrivals.py::test_golden_first_candidates",
        "test_prng_arrivals.py::test_exponential_increments_are_exponential",
    ),
    "core/truncated": (  # test_truncated.py and the fast reference tests that reach the module
        "test_truncated.py",
        "test_references.py::test_sample_interval_follows_the_truncated_prior",
        "test_references.py::test_tree_children_bounds_and_arrivals_match_closed_forms",
    ),
    "core/normal_quantile": (  # the float32 quantile's accuracy, ends and fitted constants; its use in tail_quantile
        "test_truncated.py::test_ndtri_lower_tail_ends_dtypes_and_shapes",
        "test_truncated.py::test_ndtri_lower_tail_is_within_4e_7_of_the_normal_quantile_in_every_binade_of_float32",
        "test_truncated.py::test_ndtri_lower_tail_coefficients_are_the_documented_fits",
        "test_distributions.py::test_tail_quantile_is_icdf_or_isf",
    ),
    "search/chunked": (  # the tests that pin search results, steps, status and batch schedules (of 2 files)
        "test_references.py::test_widening_levels_are_the_most_doublings_the_lanes_and_the_chunk_limit_allow",
        "test_references.py::test_search_equals_the_sequential_rule_for_any_chunking_and_limit",
        "test_references.py::test_search_batch_equals_the_sequential_rule_with_its_default_widening",
        "test_references.py::test_pfr_index_and_steps_equal_a_sequential_reference",
        "test_coders_core.py::test_codes_do_not_depend_on_chunk_size_jit_or_vmap",
        "test_coders_core.py::test_encode_batch_equals_vmap_and_accepts_batched_targets",
        "test_coders_core.py::test_encode_batch_tail_widening_changes_speed_not_codes",
        "test_coders_core.py::test_exhausted_flag_and_unbounded_ratio",
        "test_references.py::test_orc_and_mrc_equal_argmax_references_over_their_budget",
        "test_references.py::test_arrival_sums_are_exact_for_the_largest_chunk_and_larger_chunks_are_refused",
        "test_coders_core.py::test_pfr_defaults_and_argument_names_in_errors",
        "test_coders_core.py",
        "test_references.py",
    ),
    "search/heap": ("test_treesearch.py", "test_astar.py"),
    "coders/base": (  # the boundary checks first; the codec and references decode and batch-encode (as for scan)
        "test_invalid_arguments.py",
        "test_contract.py",
        "test_coders_core.py",
        "test_codec.py",
        "test_references.py",
    ),
    "coders/scan": (  # the schedule, single-problem check and warning (spies: no compile) first
        "test_coders_core.py::test_scan_coders_default_schedule_single_problem_check_and_hopeless_search_warning",
        "test_codec.py",  # the fast tier decodes and batch-encodes scan coders only through the codec and the references
        "test_contract.py",
        "test_coders_core.py",
        "test_references.py",
        "test_sp.py::test_traced_counts_above_the_table_width_are_invalid_input",
    ),
    "coders/registry": (  # the registry's own checks first, then the files that compress through it
        "test_contract.py::test_register_coder_checks_each_argument_and_the_zipf_model_has_its_documented_ends",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
        "test_codec.py::test_register_coder_round_trip",
        "test_contract.py",
        "test_codec.py",
    ),
    "coders/poisson/_pfr": (  # the fast tests that reach the coder (of 3 files)
        "test_references.py::test_pfr_index_and_steps_equal_a_sequential_reference",
        "test_coders_core.py::test_exhausted_flag_and_unbounded_ratio",
        "test_coders_core.py::test_float32_codes_do_not_depend_on_the_x64_flag",
        "test_coders_core.py::test_pfr_defaults_and_argument_names_in_errors",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder",
        "test_coders_core.py::test_orc_indices_are_in_range_and_match_pfr_when_the_budget_suffices",
        "test_coders_core.py::test_bad_input_raises_clear_errors",
        "test_references.py::test_orc_and_mrc_equal_argmax_references_over_their_budget",
        "test_references.py::test_arrival_sums_are_exact_for_the_largest_chunk_and_larger_chunks_are_refused",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[pfr]",
    ),
    "coders/poisson/_orc": (
        "test_references.py::test_orc_and_mrc_equal_argmax_references_over_their_budget",
        "test_coders_core.py::test_orc_indices_are_in_range_and_match_pfr_when_the_budget_suffices",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder",
        "test_coders_core.py::test_pfr_defaults_and_argument_names_in_errors",
        "test_coders_core.py::test_bad_input_raises_clear_errors",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[orc]",
    ),
    "coders/poisson/_mrc": (
        "test_references.py::test_orc_and_mrc_equal_argmax_references_over_their_budget",
        "test_coders_core.py::test_float32_codes_do_not_depend_on_the_x64_flag",
        "test_coders_core.py::test_orc_indices_are_in_range_and_match_pfr_when_the_budget_suffices",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder",
        "test_coders_core.py::test_pfr_defaults_and_argument_names_in_errors",
        "test_coders_core.py::test_bad_input_raises_clear_errors",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[mrc]",
    ),
    "coders/sp/partition": ("test_partition.py", "test_sp.py"),
    "coders/sp/message": ("test_sp.py", "test_contract.py"),
    "coders/sp/_sp_pfr": ("test_sp.py", "test_contract.py"),
    "coders/sp/_sp_orc": ("test_sp.py", "test_contract.py"),
    "coders/greedy/widths": ("test_widths.py",),
    "coders/greedy/_gprs": ("test_gprs.py", "test_contract.py"),
    "coders/greedy/_grs": ("test_grs.py", "test_contract.py"),
    "coders/greedy/_agrs": (  # the fast tests that reach the coder, the float64 references first
        "test_grs.py::test_agrs_accepts_the_step_a_sequential_float64_reference_accepts",
        "test_grs.py::test_agrs_float64_codes_match_the_reference_where_the_level_cap_binds",
        "test_grs.py::test_agrs_factory_message_and_packing",
        "test_grs.py::test_agrs_float32_bound_levels_stop_at_the_float32_caps",
        "test_grs.py::test_agrs_decodes_concrete_codes_with_negative_bound_fields",
        "test_grs.py::test_agrs_decodes_float32_codes_the_same_with_x64_on",
        "test_grs.py::test_agrs_packed_symbols_and_unpacked_fields_are_integers",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[agrs]",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder[agrs]",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
    ),
    "coders/tree/paths": ("test_treesearch.py", "test_astar.py"),
    "coders/tree/partition_tree": (  # the float64 tree references of A* and BnB first, then the node functions
        "test_astar.py::test_tree_coders_choose_and_decode_the_node_an_exhaustive_float64_tree_chooses",
        "test_gprs.py::test_bnb_accepts_the_node_a_float64_tree_reference_accepts",
        "test_references.py::test_tree_children_bounds_and_arrivals_match_closed_forms",
        "test_astar.py::test_tree_coders_header_entries_and_the_gaussian_ratio",
        "test_astar.py::test_tree_nodes_of_zero_prior_mass_are_never_scored_or_queued",
        "test_astar.py::test_tree_coder_limits_at_and_past_their_ends",
        "test_astar.py::test_bad_inputs_raise",
        "test_astar.py::test_limits_set_exhausted",
        "test_astar.py::test_float32_tree_codes_and_samples_do_not_depend_on_the_x64_flag",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[astar]",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder[astar]",
    ),
    "coders/tree/_astar": (  # the float64 tree reference first
        "test_astar.py::test_tree_coders_choose_and_decode_the_node_an_exhaustive_float64_tree_chooses",
        "test_astar.py::test_exact_search_never_splits_a_node_at_max_depth",
        "test_astar.py::test_limits_set_exhausted",
        "test_astar.py::test_tree_coders_header_entries_and_the_gaussian_ratio",
        "test_astar.py::test_tree_coder_limits_at_and_past_their_ends",
        "test_astar.py::test_bad_inputs_raise",
        "test_treesearch.py::test_depth_limits_are_inclusive",
        "test_treesearch.py::test_tree_code_pytree_and_the_depth_limit",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[astar]",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[adstar]",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[dadstar]",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder[astar]",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder[adstar]",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder[dadstar]",
        "test_invalid_arguments.py::test_invalid_values_under_jit_stop_at_once_with_a_status[astar]",
    ),
    "coders/tree/_gprs_bnb": (  # the float64 tree reference first (the coder's tests live in test_gprs.py)
        "test_gprs.py::test_bnb_accepts_the_node_a_float64_tree_reference_accepts",
        "test_gprs.py::test_bnb_depth_limit_stops_the_search_when_the_queue_empties",
        "test_gprs.py::test_bad_inputs_raise",
        "test_astar.py::test_tree_coders_header_entries_and_the_gaussian_ratio",
        "test_astar.py::test_tree_coder_limits_at_and_past_their_ends",
        "test_treesearch.py::test_tree_code_pytree_and_the_depth_limit",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[gprs_bnb]",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder[gprs_bnb]",
        "test_invalid_arguments.py::test_invalid_values_under_jit_stop_at_once_with_a_status[gprs_bnb]",
    ),
    "coders/auxiliary/_irec": (  # the float64 beam-search reference first
        "test_irec.py::test_irec_factory_limits_defaults_cache_and_message",
        "test_irec.py::test_beam_search_chooses_the_path_a_float64_reference_chooses",
        "test_irec.py::test_single_step_single_beam_is_gumbel_max_over_the_density_ratio",
        "test_irec.py::test_partial_sum_weights_match_the_density_ratio_at_the_end",
        "test_irec.py::test_bad_inputs_raise",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[irec]",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder[irec]",
        "test_irec.py::test_irec_float32_codes_do_not_depend_on_the_x64_flag",
        "test_invalid_arguments.py::test_invalid_values_under_jit_stop_at_once_with_a_status[irec]",
    ),
    "coders/wrappers/_factorized": (  # the wrapper against its inner coder dimension by dimension first
        "test_grs.py::test_factorized_codes_each_dimension_with_its_own_key_and_the_inner_coders_header",
        "test_grs.py::test_factorized_batch_encodes_a_tree_coder_with_its_path_words",
        "test_contract.py::test_every_registered_coder_has_a_contract_case",
        "test_contract.py::test_bad_arguments_raise_invalid_argument_error[factorized]",
        "test_contract.py::test_spec_names_the_registry_entry_and_rebuilds_the_coder[factorized]",
        "test_gprs.py::test_bad_inputs_raise",
    ),
    "entropy/bits": (
        "test_coding.py",
        "test_invalid_arguments.py::test_ideal_codelengths",
        "test_invalid_arguments.py::test_public_helpers_refuse_wrong_types",
    ),
    "entropy/models": ("test_coding.py",),
    "entropy/streams": (
        "test_coding.py",
        "test_invalid_arguments.py::test_index_streams_round_trip",
        "test_invalid_arguments.py::test_public_helpers_refuse_wrong_types",
    ),
    "codec/container": (  # the container alone (no coder, no compilation): 5-10 s per mutant under load; the tests
        # of real files (golden file, bit flips, fuzzing behind a forged CRC) compile a coder first and made it
        # 20-40 s per mutant, all of test_container.py 80-100 s per survivor; test_codec.py compiles models
        "test_container.py::test_typed_values_have_the_documented_bytes_and_read_back",
        "test_container.py::test_written_header_has_the_documented_layout",
        "test_container.py::test_write_accepts_every_limit_and_refuses_one_past_it",
        "test_container.py::test_read_refuses_what_write_would_have_refused",
        "test_container.py::test_read_names_each_defect_of_a_hand_built_archive",
        "test_container.py::test_item_dtypes_and_the_chunk_limit_are_fixed_by_the_format",
        "test_container.py::test_headers_and_archives_are_frozen_and_the_optional_fields_default_to_none_recorded",
        "test_container.py::test_unsigned_header_fields_fit_the_64_bit_varints_read_accepts",
        "test_container.py::test_the_largest_item_numbers_an_archive_can_hold",
        "test_container.py::test_counts_are_bounded_by_the_bytes_left_without_refusing_valid_files",
        "test_container.py::test_string_values_up_to_their_limit_read_back_and_a_bad_magic_is_quoted",
        "test_container.py::test_corrupt_tables_and_counts_are_named_precisely",
        "test_container.py::test_every_header_field_named_when_the_writer_refuses_it",
        "test_container.py::test_a_header_cut_anywhere_names_the_field_it_cut",
        "test_container.py::test_header_round_trip",
        "test_container.py::test_random_bytes",
    ),
    "codec/sections": (  # the streams of a chunk: the snap marks and the weight checks first, then the archives
        "test_archive.py::test_snap_marks_make_every_decoder_within_the_margin_see_the_encoders_cells",
        "test_archive.py::test_likelihood_weights_are_checked_in_either_dtype",
        "test_archive.py::test_an_archive_decodes_exactly_on_a_decoder_whose_latents_differ_in_the_last_bits",
        "test_archive.py::test_latent_step_must_be_a_power_of_two",
        "test_archive.py",
        "test_container.py",
        "test_codec.py",
    ),
}


def _run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> str:
    out = subprocess.run(cmd, check=False, cwd=cwd, env=env, text=True, capture_output=True)
    if check and out.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def scratch_clone(module: str, rev: str) -> Path:
    """``.mutation/<module>``: a clone of the repository at ``rev`` (reused if it is already there)."""
    path = SCRATCH / module.replace("/", "__")
    commit = _run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], ROOT).strip()  # ``rev`` as this checkout reads it
    if not (path / ".git").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(path)], ROOT)
    _run(["git", "fetch", "-q", str(ROOT), commit], path)  # a reused clone is brought up to date
    _run(["git", "checkout", "-q", "--force", commit], path)
    return path


def _exists(clone: Path, name: str) -> bool:
    """Whether test file ``name`` (or test ``file::test``) exists at the clone's commit: pytest fails on
    a missing one, which mutmut would count as a kill of every mutant."""
    path, _, test = name.partition("::")
    test = test.split("[")[0]  # a parametrized case: its function
    file = clone / "tests" / path
    return file.exists() and (not test or re.search(rf"^def {re.escape(test)}\(", file.read_text(), re.MULTILINE) is not None)


def runner(module: str, clone: Path) -> str:
    """The test command for one mutant: the module's fast tests that exist at the clone's commit.

    mutmut 2 counts only exit status 1 as "killed"; pytest exits with 2 when a mutant breaks the
    import (collection error), so every failure is mapped to 1.  pytest runs in the process mutmut
    starts (no shell in between), so mutmut's timeout kills it: a mutant that never stops (a stop
    rule that never fires) is cut off at 10 times the baseline instead of running to the end.
    """
    tests = [f"tests/{name}" for name in MODULE_TESTS[module] if _exists(clone, name)]
    main = "import sys, pytest; sys.exit(min(int(pytest.main(sys.argv[1:])), 1))"
    return shlex.join(["python", "-c", main, "-x", "-q", "-p", "no:cacheprovider", "-m", SELECTION, *tests])


def environment(clone: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(clone)  # the clone's jaxrec, not an installed one
    env["JAX_COMPILATION_CACHE_DIR"] = str(SCRATCH / "jax-cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    # unbounded: a size limit needs the optional ``filelock`` package, without which JAX warns and
    # silently reads nothing back from the cache (every mutant then recompiles everything)
    env["JAX_COMPILATION_CACHE_MAX_SIZE"] = "-1"
    return env


def summary(clone: Path) -> dict[str, int]:
    """Mutants per mutmut status (``ok_killed``, ``bad_survived``, ``bad_timeout``, ...), read from the cache."""
    with sqlite3.connect(f"file:{clone / '.mutmut-cache'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM Mutant GROUP BY status ORDER BY status").fetchall())


def stale_duplicates(clone: Path) -> list[int]:
    """Mutants that mutmut 2.5's ``run`` skipped: not killed, last tested against other tests, on a
    line whose text occurs more than once in the file.

    Before a run mutmut looks up each mutant's cached status keyed by its line's *text* only
    (``get_cached_mutation_statuses``), so every copy of a repeated line (``word, shift =
    divmod(level - 1, WORD_BITS)``, a decorator) reads the status of the first copy: once that one is
    killed, the other copies' survivors are never retested and stay listed as surviving.  A run
    by id (``mutmut run <id>``) looks the line up by text and number, so it retests them.
    """
    with sqlite3.connect(f"file:{clone / '.mutmut-cache'}?mode=ro", uri=True) as db:
        current = db.execute("SELECT value FROM MiscData WHERE key = 'hash_of_tests'").fetchone()
        if current is None:
            return []
        rows = db.execute(
            "SELECT m.id FROM Mutant m JOIN Line l ON m.line = l.id "
            "WHERE m.status != 'ok_killed' AND m.tested_against_hash != ? "
            "AND (SELECT COUNT(*) FROM Line d WHERE d.sourcefile = l.sourcefile AND d.line = l.line) > 1 "
            "ORDER BY m.id",
            (current[0],),
        ).fetchall()
    return [pk for (pk,) in rows]


def active_mutmut(clone: Path) -> list[int]:
    """PIDs of ``mutmut run`` processes working in ``clone`` (Linux ``/proc``; empty elsewhere).

    mutmut edits the module in place and restores it after each mutant, so a run killed or left
    running beside a new one leaves a mutant in the clone's file, and every later mutant is then
    tested on top of it (seen: a whole module "killed" by a stale ``log_t = None``)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"mutmut" in b" ".join(argv) and b"run" in argv and Path(os.readlink(proc / "cwd")) == clone:
                pids.append(int(proc.name))
        except OSError:  # a process that ended meanwhile, or one we may not inspect
            continue
    return pids


def in_process_environment(clone: Path) -> dict:
    """:func:`environment` plus what ``tests/conftest.py`` would set (it is imported after JAX here;
    an ``XLA_FLAGS`` already set is kept).  XLA's default optimization level: its cheap CPU pipeline
    (``--xla_backend_optimization_level=0``) compiled about 1.5 times faster but moves ``erf_inv``
    by an ulp or two, so the golden candidates failed on the unmutated module."""
    env = environment(clone)
    env.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# Module state that other modules' imports filled and that re-executing the module would reset: the
# coder registry is filled by the coder modules' ``register_coder`` calls, which a re-exec does not rerun
# (a mutant of the registry's own initial value is then unseen in process: ``--confirm`` retests it).
KEPT_STATE = {"coders/registry": ("REGISTRY",)}
UNCONFIRMED = "in-process survivor, unconfirmed"  # the test hash the in-process pass gives a survivor
# The in-process worker's exit status after its watchdog ended a mutant that hung inside a compiled
# computation (SIGALRM's handler only runs between Python bytecodes): the parent starts a new worker.
HUNG_EXIT = 75
WATCHDOG_GRACE = 30.0  # seconds past --timeout before the watchdog gives up on the alarm


def _misc(db: sqlite3.Connection, key: str) -> str:
    """The cache's ``MiscData`` value of ``key`` (``""`` if unset)."""
    row = db.execute("SELECT value FROM MiscData WHERE key = ?", (key,)).fetchone()
    return row[0] if row and row[0] else ""


def in_process_survivors(clone: Path) -> list[int]:
    """Mutants the last ``--in-process`` pass left surviving (marked in the cache's ``MiscData``)."""
    with sqlite3.connect(f"file:{clone / '.mutmut-cache'}?mode=ro", uri=True) as db:
        return [int(pk) for pk in _misc(db, "in_process_survivors").split(",") if pk]


def _record_hang(clone: Path, pk: int, tests_hash: str, survivors: list[int]) -> None:
    """The watchdog's record of mutant ``pk`` hung (``bad_timeout`` against ``tests_hash``), the
    survivors so far and the hung id (:func:`hung_mutant`), written with a connection of its own."""
    with sqlite3.connect(clone / ".mutmut-cache", timeout=60) as db:
        db.execute("UPDATE Mutant SET status = 'bad_timeout', tested_against_hash = ? WHERE id = ?", (tests_hash, pk))
        for key, value in (("in_process_survivors", ",".join(map(str, survivors))), ("in_process_hung", str(pk))):
            db.execute("DELETE FROM MiscData WHERE key = ?", (key,))
            db.execute("INSERT INTO MiscData (key, value) VALUES (?, ?)", (key, value))


def hung_mutant(clone: Path) -> int:
    """The mutant whose hang ended the last in-process worker (:data:`HUNG_EXIT`)."""
    with sqlite3.connect(f"file:{clone / '.mutmut-cache'}?mode=ro", uri=True) as db:
        return int(_misc(db, "in_process_hung"))


def in_process_worker(module: str, tests: list[str], timeout: float, ids: set[int], resume: bool = False) -> None:
    """The ``--in-process`` pass, run in the clone (see the module docstring); only mutants ``ids`` if given.

    A mutant whose tests hang inside a compiled computation (a ``while_loop`` that never stops: the
    alarm's exception cannot interrupt XLA) is recorded ``bad_timeout`` by a watchdog thread, which
    then ends the process with :data:`HUNG_EXIT`; the parent starts a new worker (``resume``: it
    keeps the survivors recorded so far) on the mutants after it."""
    import importlib
    import signal
    import threading
    import time

    import jax
    import pytest
    from mutmut import (
        Context,
        RelativeMutationID,
        add_mutations_by_file,
        mutate,
        mutations_by_type,
    )
    from mutmut.cache import (
        MiscData,
        Mutant,
        db_session,
        get_or_create,
        hash_of_tests,
        update_line_numbers,
    )

    filename = f"jaxrec/{module}.py"
    types = set(mutations_by_type) - set(DISABLED_MUTATION_TYPES)  # as the normal run
    config = argparse.Namespace(covered_lines_by_filename=None, coverage_data=None, mutation_types_to_apply=types)
    update_line_numbers(filename)
    add_mutations_by_file({}, filename, [""], config)
    tests_hash = hash_of_tests(["tests/"])
    sys.path[:0] = [str(Path.cwd()), str(Path.cwd() / "tests")]
    live = importlib.import_module("jaxrec." + module.replace("/", "."))
    original = Path(filename).read_text()
    code = compile(original, live.__file__, "exec")

    def install(source_code) -> None:
        """Runs ``source_code`` in the live module and rebinds other modules' names of the functions and
        classes it defined (only those: ``Array = jax.Array`` is jax's object, bound in jax's modules too).

        The rebinding also runs when ``source_code`` raises part way (a mutant that breaks the module's
        import, e.g. ``jax.jit(static_argnums=4)`` of a 4-argument function): the names defined before
        the error are new objects, and other modules must follow them, or the next install (which
        rebinds only names that still hold the objects it replaces) would leave them on stale ones."""
        before = {name: value for name, value in vars(live).items() if getattr(value, "__module__", None) == live.__name__}
        kept = {name: vars(live)[name] for name in KEPT_STATE.get(module, ()) if name in vars(live)}
        try:
            exec(source_code, vars(live))  # noqa: S102 (the point of the option)
        finally:
            vars(live).update(kept)
            rebind(before)

    def rebind(before: dict[str, object]) -> None:
        """Points other modules' names (and the coder registry's entries) that hold the objects
        ``before`` at the live module's current objects of the same names."""
        for other in list(sys.modules.values()):
            names = getattr(other, "__dict__", None)
            if other is live or not isinstance(names, dict):
                continue
            for name, value in list(names.items()):
                if name in before and value is before[name] and vars(live).get(name) is not value:
                    names[name] = vars(live)[name]
        registry = sys.modules.get("jaxrec.coders.registry")
        if registry is not None and registry is not live:  # its entries hold the module's factories and hooks
            for coder, entry in list(registry.REGISTRY.items()):
                registry.REGISTRY[coder] = entry._replace(**{
                    field: vars(live)[value.__name__] for field, value in entry._asdict().items()
                    if getattr(value, "__module__", None) == live.__name__
                    and "." not in getattr(value, "__qualname__", ".") and value.__name__ in vars(live)})

    def clear_library_caches() -> None:
        """Empties every ``functools.lru_cache`` of the library (coder factories, compiled codecs), so no
        test meets a coder or program an earlier run built from another version of the module."""
        for name, mod in list(sys.modules.items()):
            if name.split(".")[0] == "jaxrec":
                for value in list(vars(mod).values()):
                    if callable(getattr(value, "cache_clear", None)):
                        value.cache_clear()
        jax.clear_caches()

    class Timeout(Exception):
        pass

    def alarm(*_):
        raise Timeout()

    signal.signal(signal.SIGALRM, alarm)
    tests_dir = str(Path.cwd() / "tests")

    def run_tests() -> int | None:
        """pytest's exit code, or None past ``timeout``."""
        for name, mod in list(sys.modules.items()):  # the test modules and their helpers, imported afresh
            if (getattr(mod, "__file__", None) or "").startswith(tests_dir):
                del sys.modules[name]
        clear_library_caches()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-m", SELECTION, *tests]))
        except Timeout:
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    log_fd = os.dup(2)  # pytest's capture redirects descriptor 2 while a mutant's tests run

    def give_up(pk: int, survivors: list[int]) -> None:
        """The watchdog: mutant ``pk`` hung where the alarm cannot interrupt it."""
        os.write(log_fd, f"MUTANT {pk} bad_timeout (hung in a compiled computation; a new worker goes on)\n".encode())
        _record_hang(Path.cwd(), pk, tests_hash, survivors)
        os._exit(HUNG_EXIT)

    install(code)
    if run_tests() != 0:
        sys.exit("the tests fail on the unmutated module: fix them first")
    registry = importlib.import_module("jaxrec.coders.registry")
    coders = dict(registry.REGISTRY)  # a mutant of a register_coder call leaves an entry under another name
    with db_session:
        rows = [(m.id, m.line.line, m.line.line_number, m.index, m.status, m.tested_against_hash)
                for m in Mutant.select(lambda m: m.line.sourcefile.filename == filename)]
    survivors = []
    if resume:  # the survivors of the workers before this one in the pass are not retested
        survivors = in_process_survivors(Path.cwd())
    for pk, line, line_number, index, status, tested in sorted(rows):
        if (ids and pk not in ids) or pk in survivors:
            continue
        if not ids and (status == "ok_killed" or tested == tests_hash):  # as mutmut: a kill stays, so do these tests' results
            survivors += [pk] if status == "bad_survived" else []
            continue
        source, _ = mutate(Context(source=original, mutation_id=RelativeMutationID(line, index, line_number),
                                         dict_synonyms=[""], config=config))
        start = time.time()
        watchdog = threading.Timer(timeout + WATCHDOG_GRACE, give_up, (pk, list(survivors)))
        watchdog.daemon = True
        watchdog.start()
        try:
            install(compile(source, live.__file__, "exec"))
            rc = run_tests()
        except Exception:  # noqa: BLE001 (the mutant breaks the module's import)
            rc = 1
        finally:
            watchdog.cancel()
        status = "bad_timeout" if rc is None else "bad_survived" if rc in (0, 5) else "ok_killed"
        survivors += [pk] if status == "bad_survived" else []
        print(f"MUTANT {pk} {status} (pytest exit {rc}, {time.time() - start:.1f} s)", file=sys.__stderr__, flush=True)
        with db_session:
            mutant = Mutant[pk]
            # a survivor is recorded against no test hash: mutmut's own run (``--confirm``) would skip a
            # survivor already tested against the current tests
            mutant.status, mutant.tested_against_hash = status, UNCONFIRMED if status == "bad_survived" else tests_hash
        registry.REGISTRY.clear()
        registry.REGISTRY.update(coders)
        install(code)
    if run_tests() != 0:  # a mutant left something behind: its kills (and all later ones) are not to be trusted
        sys.exit("the tests fail on the restored module after the pass: discard its results")
    with db_session:
        get_or_create(MiscData, key="in_process_survivors").value = ",".join(map(str, sorted(set(survivors))))


def run_workers(module: str, clone: Path, timeout: float, ids: list[int]) -> None:
    """The in-process pass (:func:`in_process_worker` in a child process), restarted after each
    mutant that hung (:data:`HUNG_EXIT`) on the mutants after it: ``ids`` past the hung one, or,
    without ``ids``, the module's mutants not yet tested against these tests (the hung one is
    recorded ``bad_timeout``)."""
    resume = False
    while True:
        cmd = [sys.executable, str(Path(__file__).resolve()), module, "--worker", "--timeout", str(timeout),
               "--ids", ",".join(map(str, ids))] + (["--resume"] if resume else [])
        if subprocess.run(cmd, check=False, cwd=clone, env=in_process_environment(clone)).returncode != HUNG_EXIT:
            return
        hung = hung_mutant(clone)
        if ids:
            ids = [pk for pk in ids if pk > hung]
            if not ids:
                return
        resume = True


def forget(clone: Path, ids: list[int]) -> None:
    """Marks mutants ``ids`` untested in the clone's cache.  ``mutmut run <id>`` skips a mutant whose
    result was recorded against the current tests (a survivor or a timeout stays one), so a retest
    by id would otherwise silently do nothing."""
    with sqlite3.connect(clone / ".mutmut-cache") as db:
        db.executemany("UPDATE Mutant SET status = 'untested', tested_against_hash = '' WHERE id = ?",
                       [(pk,) for pk in ids])


def retest(module: str, clone: Path, env: dict, ids: list[int], why: str) -> None:
    """Runs mutants ``ids`` one process each with the normal runner (``mutmut run <id>``), after
    :func:`forget`-ting their recorded results."""
    forget(clone, ids)
    cmd = mutmut_run_command(module, clone)
    for pk in ids:
        print(f"retesting mutant {pk} with the normal runner ({why})", flush=True)
        subprocess.run(cmd[:4] + [str(pk)] + cmd[4:], check=False, cwd=clone, env=env)


def mutmut_run_command(module: str, clone: Path) -> list[str]:
    """``mutmut run`` on ``module`` with its runner; ``cmd[:4] + [id] + cmd[4:]`` runs one mutant."""
    return [
        sys.executable, "-m", "mutmut", "run", "--paths-to-mutate", f"jaxrec/{module}.py",
        "--runner", runner(module, clone), "--tests-dir", "tests/", "--no-progress",
        "--disable-mutation-types", ",".join(DISABLED_MUTATION_TYPES),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module", nargs="?", help="e.g. core/prng (see --list)")
    parser.add_argument("--rev", default="HEAD", help="commit whose code and tests are measured (default HEAD)")
    parser.add_argument("--list", action="store_true", help="print the module -> tests table")
    parser.add_argument("--report", action="store_true", help="only print the results of an earlier run")
    parser.add_argument("--in-process", action="store_true", help="test the mutants in one process (see above)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant with --in-process")
    parser.add_argument("--no-confirm", action="store_true", help="with --in-process: leave survivors unconfirmed")
    parser.add_argument("--confirm", action="store_true",
                        help="retest the survivors of the last --in-process --no-confirm pass with the normal runner only")
    parser.add_argument("--ids", default="",
                        help="test only these mutants (comma-separated ids), whatever their status: in process with "
                             "--in-process, else one normal-runner process per mutant")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the --in-process child
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)  # a worker after a hung one
    args = parser.parse_args()
    ids = [int(pk) for pk in args.ids.split(",") if pk]
    if args.worker:
        in_process_worker(args.module, [f"tests/{name}" for name in MODULE_TESTS[args.module] if _exists(Path.cwd(), name)],
                          args.timeout, set(ids), args.resume)
        return
    if args.list or not args.module:
        for module, tests in MODULE_TESTS.items():
            print(f"{module:32s} {' '.join(tests)}")
        return
    if args.module not in MODULE_TESTS:
        sys.exit(f"unknown module {args.module!r}; see --list")
    clone = SCRATCH / args.module.replace("/", "__")
    if not args.report:
        active = active_mutmut(clone.resolve())
        if active:
            sys.exit(f"a mutmut run is still active in {clone} (pids {active}): wait for it or kill it first")
        clone = scratch_clone(args.module, args.rev)  # a forced checkout also undoes a mutant a killed run left
    env = environment(clone)
    if args.report:
        pass
    elif args.in_process or args.confirm:  # survivors confirmed one process per mutant (see the module docstring)
        if not args.confirm:
            run_workers(args.module, clone, args.timeout, ids)
        if not args.no_confirm and ids and not args.in_process:  # --confirm --ids: only those
            retest(args.module, clone, env, ids, "--ids")
        elif not args.no_confirm:
            retest(args.module, clone, env, in_process_survivors(clone), "an in-process survivor")
    elif ids:
        retest(args.module, clone, env, ids, "--ids")
    else:
        subprocess.run(mutmut_run_command(args.module, clone), check=False, cwd=clone, env=env)
        retest(args.module, clone, env, stale_duplicates(clone), "a repeated line: skipped by mutmut's run")
    print(_run([sys.executable, "-m", "mutmut", "results"], clone, env, check=False))
    print(args.module, summary(clone))


if __name__ == "__main__":
    main()
