"""The v2 event-streaming protocol of ``client.threads.stream()`` (api-reference §2.10).

``translate`` turns a thread's event stream (the runs' classic stream-mode events) into
protocol events numbered by a per-thread ``seq``; ``source`` reads and filters them for
the SSE endpoint and the websocket consumer; ``commands`` answers protocol commands.
"""
