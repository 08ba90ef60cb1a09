"""The applications on top of the runtime: camera loop (:mod:`.camera`), image inference
(:mod:`.infer`), benchmarks (:mod:`.bench`), backend comparison (:mod:`.compare`), drawing
(:mod:`.visualize`) and the demo (:mod:`.demo`).
"""
