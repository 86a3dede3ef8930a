"""Makes the 'dragon' start method known to every interpreter where the
dragon package is installed, before anything imports dragon.

A child that multiprocessing starts as a fresh interpreter (a 'spawn' or
'forkserver' context in a program whose default start method is 'dragon',
or any ``python -I`` asked for 'dragon') applies the method by name before
it imports the program's modules; without this hook, it fails with
"cannot find context for 'dragon'".

dragon-start-method.pth imports this module at start-up.  It imports
nothing and costs one name comparison per import until
multiprocessing.context is imported; then it gives that module's table of
contexts a fallback that imports dragon (which registers the method) the
first time 'dragon' is asked for, and leaves the import system.  An
interpreter that never uses multiprocessing never loads dragon.
"""
import sys

_TARGET = "multiprocessing.context"


class _Contexts(dict):
    """multiprocessing.context._concrete_contexts, with 'dragon' loaded on
    first use."""

    def __missing__(self, method):
        if method != "dragon":
            raise KeyError(method)
        import dragon  # noqa: F401  registers 'dragon' in this very dict
        return dict.__getitem__(self, method)


def _hook(module):
    contexts = getattr(module, "_concrete_contexts", None)
    if isinstance(contexts, dict) and not isinstance(contexts, _Contexts):
        module._concrete_contexts = _Contexts(contexts)


class _Finder:
    """Finds nothing itself: wraps the loader of multiprocessing.context so
    that _hook runs once the module is executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        _remove()
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if find is not None:
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_hook(module):
            exec_module(module)
            _hook(module)
        spec.loader.exec_module = exec_and_hook
        return spec


_finder = _Finder()


def _remove():
    try:
        sys.meta_path.remove(_finder)
    except ValueError:
        pass


def install():
    """Hook multiprocessing.context now if it is loaded, else when it is."""
    module = sys.modules.get(_TARGET)
    if module is not None:
        _hook(module)
    elif _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


install()
