"""Vigil's Grafana dashboards: Operations, Model performance, Data drift, Business KPIs and KYC.

Panels over ``vigil_*`` series that exist today read the serving processes' own metrics; panels
marked "(monitor)" read the names the monitor will export (dashboards/catalog.py), and show no
data until it runs. Queries use ``$__rate_interval`` for rates, so they follow the scrape interval.
"""

from __future__ import annotations

from dashboards.grafana import Dashboard, Panel, Row, Target, Threshold, Variable

RATE = "$__rate_interval"
SCREEN = 'method="POST",route="/v1/transactions"'
KYC_SUBMIT = 'method="POST",route="/v1/kyc/submissions"'
MODEL_FILTER = 'model=~"$model",version=~"$version"'
WINDOW_FILTER = 'model=~"$model",version=~"$version",window=~"$window"'

PSI_LINES = (Threshold(0.1, "orange"), Threshold(0.25, "red"))
FIRING_ALERTS = Target('ALERTS{alertstate="firing",alertname=~"Vigil.*|Ray.*"}', "Firing alerts")


def _quantiles(
    metric: str, by: str = "", selector: str = "", qs: tuple[float, ...] = (0.5, 0.99)
) -> tuple[Target, ...]:
    """``histogram_quantile`` targets of a histogram, per ``by`` labels (comma-separated) if given."""
    group = f"{by}, le" if by else "le"
    legend_by = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(",")) if by else ""
    series = f"{metric}_bucket{{{selector}}}" if selector else f"{metric}_bucket"
    return tuple(
        Target(
            f"histogram_quantile({q}, sum by ({group}) (rate({series}[{RATE}])))",
            f"p{q * 100:g} {legend_by}".strip(),
        )
        for q in qs
    )


def _model_variables(metric: str) -> tuple[Variable, ...]:
    return (
        Variable("model", "Model", f"label_values({metric}, model)"),
        Variable("version", "Version", f'label_values({metric}{{model=~"$model"}}, version)'),
        Variable("window", "Window", f"label_values({metric}, window)"),
    )


def operations() -> Dashboard:
    return Dashboard(
        uid="vigil-operations",
        title="Vigil / Operations",
        description="Throughput, latency per stage, errors, scorer availability, batching and Serve replicas.",
        annotations=(FIRING_ALERTS,),
        rows=(
            Row(
                "Traffic",
                (
                    Panel(
                        "Screening throughput",
                        (
                            Target(f"sum(rate(vigil_decisions_total[{RATE}]))", "decisions"),
                            Target(
                                f"sum(rate(vigil_http_request_seconds_count{{{SCREEN}}}[{RATE}]))",
                                "POST /v1/transactions",
                            ),
                        ),
                        "Transactions decided per second, and screening requests (retries and refusals included).",
                        unit="reqps",
                        w=8,
                    ),
                    Panel(
                        "Requests by route and status",
                        (
                            Target(
                                f"sum by (method, route, status) (rate(vigil_http_request_seconds_count[{RATE}]))",
                                "{{method}} {{route}} {{status}}",
                            ),
                        ),
                        unit="reqps",
                        w=8,
                    ),
                    Panel(
                        "Refused and replayed",
                        (
                            Target(
                                f"sum by (code) (rate(vigil_rejected_total[{RATE}]))", "refused: {{code}}"
                            ),
                            Target(
                                f"sum(rate(vigil_idempotent_replays_total[{RATE}]))", "idempotent replays"
                            ),
                            Target(
                                f"sum by (answered_by) (rate(vigil_screen_requests_total[{RATE}]))",
                                "answered by {{answered_by}}",
                            ),
                        ),
                        "Refusals by error code (overloaded is a 503), retries answered from the stored "
                        "decision, and who answered screening requests (fast path or FastAPI route).",
                        unit="reqps",
                        w=8,
                    ),
                ),
            ),
            Row(
                "Latency",
                (
                    Panel(
                        "Screening latency (POST /v1/transactions)",
                        _quantiles("vigil_http_request_seconds", selector=SCREEN),
                        "Time in the app from request to last byte; the line is the 100 ms latency SLO.",
                        unit="s",
                        thresholds=(Threshold(0.1, "red"),),
                    ),
                    Panel(
                        "SLO error and slow ratios",
                        (
                            Target("job:vigil_screen_errors:ratio_rate5m", "5xx, 5m ({{job}})"),
                            Target("job:vigil_screen_errors:ratio_rate1h", "5xx, 1h ({{job}})"),
                            Target("job:vigil_screen_slow:ratio_rate5m", "over 100 ms, 5m ({{job}})"),
                            Target("job:vigil_screen_slow:ratio_rate1h", "over 100 ms, 1h ({{job}})"),
                        ),
                        "Screening requests answered 5xx (budget 0.1%) and slower than 100 ms (budget 1%), "
                        "from the recording rules the burn-rate alerts use.",
                        unit="percentunit",
                        min=0,
                        thresholds=(Threshold(0.001, "orange"), Threshold(0.01, "red")),
                    ),
                    Panel(
                        "Stage latency p50",
                        _quantiles("vigil_stage_seconds", by="stage", qs=(0.5,)),
                        "Per micro-batch: lookup, graph (features, scorers), persist, publish, total.",
                        unit="s",
                        w=8,
                    ),
                    Panel(
                        "Stage latency p99",
                        _quantiles("vigil_stage_seconds", by="stage", qs=(0.99,)),
                        unit="s",
                        w=8,
                    ),
                    Panel(
                        "Serve deployment latency p99",
                        _quantiles("ray_serve_deployment_processing_latency_ms", by="deployment", qs=(0.99,)),
                        "Ray Serve's own figure per deployment (Ray's metrics export).",
                        unit="ms",
                        w=8,
                    ),
                ),
            ),
            Row(
                "Errors",
                (
                    Panel(
                        "5xx share of answers (every route)",
                        (Target("job:vigil_http_errors:ratio_rate5m", "{{job}}"),),
                        unit="percentunit",
                        min=0,
                        thresholds=(Threshold(0.05, "red"),),
                        w=8,
                    ),
                    Panel(
                        "Graph failures and Serve errors",
                        (
                            Target(f"sum(rate(vigil_graph_failures_total[{RATE}]))", "batches answered 503"),
                            Target(
                                f"sum by (deployment, exception_type) "
                                f"(rate(ray_serve_deployment_error_counter_total[{RATE}]))",
                                "{{deployment}}: {{exception_type}}",
                            ),
                        ),
                        unit="ops",
                        w=8,
                    ),
                    Panel(
                        "Events: publish failures, relay, outbox",
                        (
                            Target(
                                f"sum(rate(vigil_event_publish_failures_total[{RATE}]))", "publish failures/s"
                            ),
                            Target(f"sum(rate(vigil_events_republished_total[{RATE}]))", "relayed/s"),
                            Target("sum(vigil_event_outbox_rows)", "outbox rows"),
                        ),
                        "A failed publish leaves its outbox row; the relay publishes it later.",
                        w=8,
                    ),
                ),
            ),
            Row(
                "Scorers and batching",
                (
                    Panel(
                        "Scorer availability",
                        (
                            Target(
                                f"1 - (sum by (scorer) (rate(vigil_scorer_unavailable_total[{RATE}])) "
                                f"/ ignoring (scorer) group_left sum(rate(vigil_batch_size_count[{RATE}])))",
                                "{{scorer}}",
                                instant=True,
                            ),
                        ),
                        "Share of screening batches that got the scorer's scores.",
                        type="stat",
                        unit="percentunit",
                        thresholds=(
                            Threshold(0.0, "red"),
                            Threshold(0.5, "orange"),
                            Threshold(0.99, "green"),
                        ),
                        w=6,
                    ),
                    Panel(
                        "Batches without a scorer",
                        (
                            Target(
                                f"sum by (scorer) (rate(vigil_scorer_unavailable_total[{RATE}]))",
                                "{{scorer}}",
                            ),
                        ),
                        "Missed deadline, failure or not loaded (vigil.decision.circuit).",
                        unit="ops",
                        w=6,
                    ),
                    Panel(
                        "Micro-batch size (Ingress)",
                        (
                            *_quantiles("vigil_batch_size"),
                            Target(
                                f"sum(rate(vigil_batch_size_sum[{RATE}])) / sum(rate(vigil_batch_size_count[{RATE}]))",
                                "mean",
                            ),
                        ),
                        w=6,
                    ),
                    Panel(
                        "Scorer batches (@serve.batch)",
                        (
                            *_quantiles("ray_serve_actual_batch_size", by="deployment", qs=(0.5,)),
                            Target(
                                "sum by (deployment) (ray_serve_batch_queue_length)", "queued: {{deployment}}"
                            ),
                        ),
                        "Requests per batch call and requests waiting for one, per deployment.",
                        w=6,
                    ),
                ),
            ),
            Row(
                "Replicas (Ray Serve)",
                (
                    Panel(
                        "Healthy replicas",
                        (
                            Target(
                                "sum by (application, deployment) (ray_serve_deployment_replica_healthy)",
                                "{{deployment}}",
                            ),
                        ),
                        w=6,
                    ),
                    Panel(
                        "Requests queued at handles",
                        (
                            Target(
                                "sum by (deployment) (ray_serve_deployment_queued_queries)", "{{deployment}}"
                            ),
                        ),
                        w=6,
                    ),
                    Panel(
                        "Requests in flight",
                        (
                            Target(
                                "sum by (deployment) (ray_serve_replica_processing_queries)", "{{deployment}}"
                            ),
                        ),
                        w=6,
                    ),
                    Panel(
                        "Requests per deployment",
                        (
                            Target(
                                f"sum by (deployment) (rate(ray_serve_deployment_request_counter_total[{RATE}]))",
                                "{{deployment}}",
                            ),
                        ),
                        unit="reqps",
                        w=6,
                    ),
                ),
            ),
            Row(
                "Processes",
                (
                    Panel(
                        "Garbage-collector pauses p99",
                        _quantiles("vigil_gc_pause_seconds", by="generation", qs=(0.99,)),
                        "Every request in flight in the process waits this long.",
                        unit="s",
                        w=8,
                    ),
                    Panel(
                        "SQLite WAL checkpoints",
                        _quantiles("vigil_db_checkpoint_seconds"),
                        unit="s",
                        w=8,
                    ),
                    Panel(
                        "Scrape targets up",
                        (Target('up{job=~"vigil|vigil-monitor|ray"}', "{{job}} {{instance}}", instant=True),),
                        type="stat",
                        thresholds=(Threshold(0.0, "red"), Threshold(1.0, "green")),
                        w=4,
                    ),
                    Panel(
                        "Age of the monitor's figures",
                        (
                            Target(
                                "time() - max(vigil_monitor_computed_timestamp_seconds)", "age", instant=True
                            ),
                        ),
                        "Model, drift and business figures are recomputed from the database every period.",
                        type="stat",
                        unit="s",
                        thresholds=(Threshold(15 * 60, "red"),),
                        w=4,
                    ),
                ),
            ),
        ),
    )


def model_performance() -> Dashboard:
    return Dashboard(
        uid="vigil-model-performance",
        title="Vigil / Model performance",
        description="Live score distributions, and precision and recall on label-matured windows (monitor).",
        variables=_model_variables("vigil_model_precision"),
        annotations=(FIRING_ALERTS,),
        rows=(
            Row(
                "Scores of screened transactions",
                (
                    Panel(
                        "Fraud score distribution",
                        (
                            Target(
                                f"sum by (le) (increase(vigil_fraud_score_bucket[{RATE}]))",
                                "{{le}}",
                                heatmap=True,
                            ),
                        ),
                        "Supervised p(fraud), transactions per score bucket.",
                        type="heatmap",
                    ),
                    Panel(
                        "Anomaly score distribution",
                        (
                            Target(
                                f"sum by (le) (increase(vigil_anomaly_score_bucket[{RATE}]))",
                                "{{le}}",
                                heatmap=True,
                            ),
                        ),
                        type="heatmap",
                    ),
                    Panel(
                        "Mean scores",
                        (
                            Target(
                                f"sum(rate(vigil_fraud_score_sum[{RATE}])) / sum(rate(vigil_fraud_score_count[{RATE}]))",
                                "fraud",
                            ),
                            Target(
                                f"sum(rate(vigil_anomaly_score_sum[{RATE}])) "
                                f"/ sum(rate(vigil_anomaly_score_count[{RATE}]))",
                                "anomaly",
                            ),
                        ),
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Share scored above 0.5",
                        (
                            Target(
                                f'1 - sum(rate(vigil_fraud_score_bucket{{le="0.5"}}[{RATE}])) '
                                f"/ sum(rate(vigil_fraud_score_count[{RATE}]))",
                                "fraud score > 0.5",
                            ),
                            Target(
                                f'1 - sum(rate(vigil_anomaly_score_bucket{{le="0.5"}}[{RATE}])) '
                                f"/ sum(rate(vigil_anomaly_score_count[{RATE}]))",
                                "anomaly score > 0.5",
                            ),
                        ),
                        unit="percentunit",
                        min=0,
                    ),
                ),
            ),
            Row(
                "Precision and recall (monitor)",
                (
                    Panel(
                        "Precision against the evaluation report",
                        (
                            Target(
                                f"vigil_model_precision{{{WINDOW_FILTER}}}",
                                "{{model}} {{version}} {{window}}",
                            ),
                            Target(
                                f"vigil_model_evaluation_precision{{{MODEL_FILTER}}}",
                                "evaluation {{model}} {{version}}",
                            ),
                        ),
                        "At the deployed thresholds, on label-matured windows. The alert fires under 80% "
                        "of the evaluation's figure on a window at least half labelled.",
                        unit="percentunit",
                        min=0,
                        max=1,
                        w=6,
                    ),
                    Panel(
                        "Recall against the evaluation report",
                        (
                            Target(
                                f"vigil_model_recall{{{WINDOW_FILTER}}}", "{{model}} {{version}} {{window}}"
                            ),
                            Target(
                                f"vigil_model_evaluation_recall{{{MODEL_FILTER}}}",
                                "evaluation {{model}} {{version}}",
                            ),
                        ),
                        unit="percentunit",
                        min=0,
                        max=1,
                        w=6,
                    ),
                    Panel(
                        "Labelled share of each window",
                        (
                            Target(
                                f"vigil_model_labelled_fraction{{{WINDOW_FILTER}}}",
                                "{{model}} {{version}} {{window}}",
                            ),
                            Target(
                                "sum(increase(vigil_labels_received_total[1h]))", "labels received, last hour"
                            ),
                        ),
                        "Labels arrive days late: a young window's figures rest on few labels.",
                        unit="percentunit",
                        min=0,
                        w=6,
                    ),
                    Panel(
                        "F1, ROC-AUC, PR-AUC",
                        (
                            Target(
                                f"vigil_model_f1{{{WINDOW_FILTER}}}", "F1 {{model}} {{version}} {{window}}"
                            ),
                            Target(
                                f"vigil_model_roc_auc{{{WINDOW_FILTER}}}",
                                "ROC-AUC {{model}} {{version}} {{window}}",
                            ),
                            Target(
                                f"vigil_model_pr_auc{{{WINDOW_FILTER}}}",
                                "PR-AUC {{model}} {{version}} {{window}}",
                            ),
                        ),
                        "F1 at the deployed thresholds; the AUCs of the stored fraud score.",
                        min=0,
                        max=1,
                        w=6,
                    ),
                ),
            ),
            Row(
                "Rules",
                (
                    Panel(
                        "Enforced rule hits",
                        (
                            Target(
                                f'sum by (rule_id, outcome) (rate(vigil_rule_hits_total{{mode="enforce"}}[{RATE}]))',
                                "{{rule_id}} {{outcome}}",
                            ),
                        ),
                        unit="ops",
                    ),
                    Panel(
                        "Shadow rule hits",
                        (
                            Target(
                                f'sum by (rule_id, outcome) (rate(vigil_rule_hits_total{{mode="shadow"}}[{RATE}]))',
                                "{{rule_id}} {{outcome}}",
                            ),
                        ),
                        "Rules tried on live traffic: they never change the outcome.",
                        unit="ops",
                    ),
                ),
            ),
        ),
    )


def data_drift() -> Dashboard:
    feature_filter = f'{WINDOW_FILTER},feature=~"$feature"'
    return Dashboard(
        uid="vigil-data-drift",
        title="Vigil / Data drift",
        description="Per-feature PSI and KS against the training reference (monitor), and live score quantiles.",
        variables=(
            *_model_variables("vigil_feature_psi"),
            Variable("feature", "Feature", 'label_values(vigil_feature_psi{model=~"$model"}, feature)'),
        ),
        annotations=(FIRING_ALERTS,),
        rows=(
            Row(
                "Features (monitor)",
                (
                    Panel(
                        "PSI per feature",
                        (
                            Target(
                                f"max by (feature, window) (vigil_feature_psi{{{feature_filter}}})",
                                "{{feature}} {{window}}",
                            ),
                        ),
                        "Against the reference bins frozen at training time. Over 0.1 a moderate shift "
                        "(warning after an hour), over 0.25 a significant one (critical after 30 minutes).",
                        min=0,
                        thresholds=PSI_LINES,
                        w=16,
                    ),
                    Panel(
                        "Features ranked by PSI",
                        (
                            Target(
                                f"sort_desc(max by (feature) (vigil_feature_psi{{{feature_filter}}}))",
                                "{{feature}}",
                                instant=True,
                            ),
                        ),
                        type="bargauge",
                        min=0,
                        thresholds=PSI_LINES,
                        w=8,
                    ),
                    Panel(
                        "KS statistic per continuous feature",
                        (
                            Target(
                                f"max by (feature, window) (vigil_feature_ks{{{feature_filter}}})",
                                "{{feature}} {{window}}",
                            ),
                        ),
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Score distribution PSI",
                        (
                            Target(
                                f"max by (model, version, window) (vigil_score_psi{{{WINDOW_FILTER}}})",
                                "{{model}} {{version}} {{window}}",
                            ),
                        ),
                        "The model's scores against its evaluation scores.",
                        min=0,
                        thresholds=PSI_LINES,
                    ),
                ),
            ),
            Row(
                "Live scores",
                (
                    Panel(
                        "Fraud score quantiles",
                        _quantiles("vigil_fraud_score", qs=(0.5, 0.9, 0.99)),
                        "From every screened transaction, before any label: a shift here comes first.",
                        min=0,
                        max=1,
                    ),
                    Panel(
                        "Anomaly score quantiles",
                        _quantiles("vigil_anomaly_score", qs=(0.5, 0.9, 0.99)),
                        min=0,
                        max=1,
                    ),
                ),
            ),
        ),
    )


def business_kpis() -> Dashboard:
    window = 'window=~"$window"'
    return Dashboard(
        uid="vigil-business-kpis",
        title="Vigil / Business KPIs",
        description="Outcome shares and the review queue now; fraud caught, false positives and turnaround (monitor).",
        variables=(Variable("window", "Window", "label_values(vigil_fraud_caught_transactions, window)"),),
        rows=(
            Row(
                "Decisions",
                (
                    Panel(
                        "Outcome shares",
                        (
                            Target(
                                f"sum by (outcome) (rate(vigil_decisions_total[{RATE}])) "
                                f"/ ignoring (outcome) group_left sum(rate(vigil_decisions_total[{RATE}]))",
                                "{{outcome}}",
                            ),
                        ),
                        unit="percentunit",
                        min=0,
                        max=1,
                        stacked=True,
                        w=12,
                    ),
                    Panel(
                        "Outcome shares by window (monitor)",
                        (Target(f"vigil_outcome_share{{{window}}}", "{{outcome}} {{window}}", instant=True),),
                        "From the database: survives restarts, unlike the process counters.",
                        type="bargauge",
                        unit="percentunit",
                        min=0,
                        max=1,
                        w=6,
                    ),
                    Panel(
                        "Outcome shares, last hour",
                        (
                            Target(
                                "sum by (outcome) (increase(vigil_decisions_total[1h])) "
                                "/ ignoring (outcome) group_left sum(increase(vigil_decisions_total[1h]))",
                                "{{outcome}}",
                                instant=True,
                            ),
                        ),
                        type="stat",
                        unit="percentunit",
                        w=6,
                    ),
                ),
            ),
            Row(
                "Review queue",
                (
                    Panel(
                        "Open review cases",
                        (
                            Target("sum(job:vigil_review_backlog:cases)", "created - resolved, since start"),
                            Target("max(vigil_review_queue_cases)", "in the database (monitor)"),
                        ),
                        "The counters restart with the processes; the monitor's figure comes from the database.",
                        thresholds=(Threshold(500, "orange"),),
                        w=8,
                    ),
                    Panel(
                        "Cases opened and resolved",
                        (
                            Target(f"sum(rate(vigil_review_cases_created_total[{RATE}]))", "opened"),
                            Target(
                                f"sum by (resolution) (rate(vigil_review_cases_resolved_total[{RATE}]))",
                                "resolved: {{resolution}}",
                            ),
                        ),
                        unit="ops",
                        w=8,
                    ),
                    Panel(
                        "Oldest open case (monitor)",
                        (Target("max(vigil_review_queue_oldest_age_seconds)", "oldest", instant=True),),
                        type="stat",
                        unit="s",
                        thresholds=(Threshold(8 * 3600, "red"),),
                        w=4,
                    ),
                    Panel(
                        "Review turnaround (monitor)",
                        (Target(f"vigil_review_turnaround_seconds{{{window}}}", "q{{quantile}} {{window}}"),),
                        unit="s",
                        w=4,
                    ),
                ),
            ),
            Row(
                "Fraud caught (monitor)",
                (
                    Panel(
                        "Confirmed fraud blocked or reviewed",
                        (Target(f"vigil_fraud_caught_transactions{{{window}}}", "{{window}}"),),
                        w=8,
                    ),
                    Panel(
                        "Its value",
                        (
                            Target(
                                f"sum by (currency, window) (vigil_fraud_caught_amount{{{window}}})",
                                "{{currency}} {{window}}",
                            ),
                        ),
                        w=8,
                    ),
                    Panel(
                        "False-positive rate",
                        (Target(f"vigil_false_positive_rate{{{window}}}", "{{window}}"),),
                        "Legitimate transactions blocked or sent to review, over all legitimate ones.",
                        unit="percentunit",
                        min=0,
                        w=8,
                    ),
                ),
            ),
        ),
    )


def kyc() -> Dashboard:
    window = 'window=~"$window"'
    return Dashboard(
        uid="vigil-kyc",
        title="Vigil / KYC",
        description="Submissions and their latency from the API's metrics; outcomes by window from the monitor.",
        variables=(Variable("window", "Window", "label_values(vigil_kyc_submissions, window)"),),
        rows=(
            Row(
                "Submissions",
                (
                    Panel(
                        "Submissions by status",
                        (
                            Target(
                                f"sum by (status) (rate(vigil_http_request_seconds_count{{{KYC_SUBMIT}}}[{RATE}]))",
                                "{{status}}",
                            ),
                        ),
                        unit="reqps",
                        w=8,
                    ),
                    Panel(
                        "Submission latency",
                        _quantiles("vigil_http_request_seconds", selector=KYC_SUBMIT),
                        "Document, face and liveness checks run inside the request.",
                        unit="s",
                        w=8,
                    ),
                    Panel(
                        "Status lookups",
                        (
                            Target(
                                "sum by (status) (rate(vigil_http_request_seconds_count"
                                f'{{method="GET",route="/v1/kyc/submissions/{{submission_id}}"}}[{RATE}]))',
                                "{{status}}",
                            ),
                        ),
                        unit="reqps",
                        w=8,
                    ),
                ),
            ),
            Row(
                "Outcomes (monitor)",
                (
                    Panel(
                        "Approved, review, rejected",
                        (Target(f"vigil_kyc_outcome_share{{{window}}}", "{{outcome}} {{window}}"),),
                        "Share of the window's submissions by outcome.",
                        unit="percentunit",
                        min=0,
                        max=1,
                        stacked=True,
                        w=16,
                    ),
                    Panel(
                        "Submissions per window",
                        (
                            Target(
                                f"sum by (outcome, window) (vigil_kyc_submissions{{{window}}})",
                                "{{outcome}} {{window}}",
                                instant=True,
                            ),
                        ),
                        type="bargauge",
                        w=8,
                    ),
                ),
            ),
        ),
    )


def all_dashboards() -> list[Dashboard]:
    return [operations(), model_performance(), data_drift(), business_kpis(), kyc()]
