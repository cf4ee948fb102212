from hw.native.ucpatch import select as _select_unicorn

_select_unicorn()  # before anything imports unicorn: the patched library when it is built
