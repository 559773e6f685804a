"""The one progress protocol: ``callback(done, total, stage)``, its optional ``stop_requested``
and ``publish``, and a job of the server's queue as such a callback."""

from engine.jobs import Job, JobProgress, JobQueue
from engine.progress import publish, report, report_each_percent, stop_requested


def test_no_callback_is_told_nothing_and_never_asks_to_stop():
    report(None, 1, 2, "reading")
    publish(None, "part")
    assert stop_requested(None) is False


def test_a_plain_function_is_a_progress_callback():
    calls = []

    def callback(done, total, stage):
        calls.append((done, total, stage))

    report(callback, 1.5, 4, "optimising")
    publish(callback, "part")  # a plain function has no publish: nothing happens
    assert calls == [(1.5, 4, "optimising")] and stop_requested(callback) is False


def test_loops_over_many_items_report_each_hundredth_and_the_end():
    calls = []
    for done in range(1, 251):
        report_each_percent(lambda *call: calls.append(call), done, 250, "reading images")
    # 250 // 100 = 2: every second item, 125 times, the last one included.
    assert [done for done, _, _ in calls] == list(range(2, 251, 2))
    few = []
    for done in range(1, 8):
        report_each_percent(lambda *call: few.append(call), done, 7, "unpacking")
    assert [done for done, _, _ in few] == list(range(1, 8))


def test_a_job_as_a_callback_reports_publishes_and_asks_to_stop_once_cancelled():
    job = Job("key", lambda job: None)
    callback = JobProgress(job)
    report(callback, 2.5, 10, "current batch: 2 filters, step 3/8")
    publish(callback, "first batch")
    assert (job.done, job.total, job.text) == (2.5, 10, "current batch: 2 filters, step 3/8")
    assert job.parts() == ["first batch"] and not stop_requested(callback)
    JobQueue().cancel(job)
    report(callback, 3, 10, "batch finished")  # does not raise: the work stops by itself
    assert stop_requested(callback) and job.done == 3
