"""Check every TensorRT name and call in the project against the TensorRT type stub.

TensorRT cannot run on the CI machine, so a misspelt or removed TensorRT call would only fail
on a Jetson. This check makes it fail here (docs/ARCHITECTURE.md): it reads the `tensorrt-stubs`
package (`pip install --no-deps tensorrt-stubs==10.13.0.35.1`; the stub is data here, never
imported) and walks the source of every project module that imports `tensorrt`:

- every `trt.X` must be a name of the module, every `trt.X.Y` a member of that class (enum
  members, nested classes, methods, properties, attributes, inherited ones included);
- every attribute used on an object whose TensorRT type is known must exist on that class, and
  a property must not be called. Types are inferred within a function from assignments
  (`builder = trt.Builder(logger)`, then the stub's return types: `builder.create_network()` is
  an INetworkDefinition, `runtime.deserialize_cuda_engine(...)` an ICudaEngine, ...), from
  annotations (`error: trt.ParserError = parser.get_error(i)`, parameters, `self._engine:
  trt.ICudaEngine` at class level), `with ... as x`, `self.x = ...` within a class, and the
  return annotations of the module's own functions. Anything else is unknown and not checked.

The stub is 10.13. A call that exists only in TensorRT 8.6 (or that the stub generator left
out) is allowed only through ALLOW_LIST: one entry per name, the only files that may use it
(`runtime/trt_version.py`, where the version decides), and why. Unused or no longer needed
entries are errors too, so the list stays small. The other direction: names the 10.13 stub has
but another supported TensorRT lacks (8.6 lacks strong typing, 11 removed weak typing) are in
VERSION_GATED and may only appear in the files that choose them from TrtCapabilities.

The stub as shipped is not valid Python (a parameter named `in`; a non-default argument after
a default one). It is parsed from a sanitised copy in memory: each `def` line that does not
parse gets the signature `(*args, **kwargs)`, keeping its return annotation.

    python tools/trt_api_check.py             # exit 1 and one line per problem

A developer and CI tool, not part of the installed packages: tools/ is not a package, so it runs
as a script (its tests load it from its file).
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime import cli
from runtime.cli import REPO

STUB_DISTRIBUTION = "tensorrt-stubs"
STUB_PIN = "10.13.0.35.1"
BINDINGS_STUB = "tensorrt_bindings/tensorrt.pyi"
PACKAGE_STUB = "tensorrt/__init__.pyi"
PACKAGES = ("export", "runtime", "calibration", "model")
MODULE = "tensorrt"  # owner name for module-level allow-list entries
MODULE_FACTORIES = frozenset({"import_tensorrt"})  # project functions that return the tensorrt module
_STUB_PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt.")


class StubNotFound(Exception):
    """The tensorrt-stubs distribution is not installed (or lacks its .pyi files)."""


@dataclass(frozen=True)
class Allowed:
    owner: str  # stub class qualname, or MODULE for a module-level name
    name: str
    files: tuple[str, ...]  # POSIX paths relative to the repository root
    reason: str


ALLOW_LIST: tuple[Allowed, ...] = (
    Allowed(
        "IExecutionContext",
        "device_memory",
        ("runtime/trt_version.py",),
        "TensorRT 8.6 and 10.0 give a context its scratch memory by assigning `context.device_memory`; "
        "set_device_memory(address, size) only exists from 10.1 (TrtCapabilities.device_memory_v2 picks). "
        "It is a write-only property, which the 10.13 stub generator leaves out.",
    ),
)


# In the 10.13 stub, but missing from another supported version: only these files may use them,
# each behind a TrtCapabilities test. (Owner, name, files, which versions lack it.)
_BUILDER, _VERSION = "export/trt_builder.py", "runtime/trt_version.py"
_WEAK = "weak typing: removed in TensorRT 11 (gate: TrtCapabilities.weakly_typed / mode fp16_weak)"
VERSION_GATED: tuple[Allowed, ...] = (
    Allowed("BuilderFlag", "FP16", (_BUILDER,), _WEAK),
    Allowed("BuilderFlag", "INT8", (_BUILDER,), _WEAK + "; needed for Q/DQ on 8.6 (qdq_needs_int8_flag)"),
    Allowed("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS", (_BUILDER,), _WEAK),
    Allowed("BuilderFlag", "PREFER_PRECISION_CONSTRAINTS", (), _WEAK),
    Allowed("ILayer", "precision", (_BUILDER,), _WEAK),
    Allowed("ILayer", "set_output_type", (_BUILDER,), _WEAK),
    Allowed("Builder", "platform_has_fast_fp16", (), "removed in TensorRT 11"),
    Allowed("Builder", "platform_has_fast_int8", (), "removed in TensorRT 11"),
    Allowed("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH", (_VERSION,), "needed on 8.6, ignored in 10, not in 11"),
    Allowed("NetworkDefinitionCreationFlag", "STRONGLY_TYPED", (_VERSION,), "not in TensorRT 8.6"),
    Allowed(MODULE, "ExecutionContextAllocationStrategy", (_VERSION,), "not in TensorRT 8.6"),
    Allowed(
        "ICudaEngine",
        "create_execution_context_without_device_memory",
        (_VERSION,),
        "the 8.6 way; deprecated in 10.0, expected gone in 11",
    ),
    Allowed("ICudaEngine", "device_memory_size", (_VERSION,), "deprecated in 10.1 for device_memory_size_v2"),
    Allowed("ICudaEngine", "device_memory_size_v2", (_VERSION,), "not before TensorRT 10.1"),
    Allowed("IExecutionContext", "set_device_memory", (_VERSION,), "not before TensorRT 10.1"),
    Allowed("ParserError", "node_name", (_BUILDER,), "not in TensorRT 8.6 (gate: parser_error_has_node_name, 10.2+)"),
)


@dataclass(frozen=True)
class Member:
    kind: str  # "method" | "property" | "attribute" | "class" | "function"
    type: str | None = None  # qualname of the value's class (return type for methods/functions)


@dataclass
class StubClass:
    qualname: str
    base_exprs: list[ast.expr] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    members: dict[str, Member] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    col: int
    expr: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.expr}: {self.message}"


# --------------------------------------------------------------------------------- the stub


def sanitise(text: str, max_fixes: int = 100) -> tuple[ast.Module, list[str]]:
    """Parse the stub, rewriting each `def` line that is not valid Python to `(*args, **kwargs)`."""
    lines = text.splitlines()
    fixes: list[str] = []
    while True:
        try:
            return ast.parse("\n".join(lines)), fixes
        except SyntaxError as exc:
            index = (exc.lineno or 0) - 1
            line = lines[index] if 0 <= index < len(lines) else ""
            stripped = line.lstrip()
            head, paren, _ = stripped.partition("(")
            if not stripped.startswith("def ") or not paren or len(fixes) >= max_fixes:
                raise SyntaxError(f"stub line {index + 1} cannot be sanitised: {exc.msg}: {line.strip()!r}") from exc
            arrow = stripped.rfind(") ->")
            returns = stripped[arrow + 1 :].rstrip().rstrip(":").rstrip() if arrow >= 0 else ""
            indent = line[: len(line) - len(stripped)]
            lines[index] = f"{indent}{head}(*args, **kwargs){' ' + returns if returns else ''}:"
            fixes.append(f"line {index + 1}: {head.removeprefix('def ')}(...): {exc.msg}")


class StubIndex:
    """Module-level names and, per class, its members, from the tensorrt-stubs .pyi files."""

    def __init__(self, bindings: str, package: str | None = None, version: str = "?") -> None:
        self.version = version
        self.classes: dict[str, StubClass] = {}
        self.module: dict[str, Member] = {}
        tree, self.fixes = sanitise(bindings)
        self._collect_classes(tree.body, "")
        for cls in self.classes.values():
            cls.bases = [b for b in (self.resolve(e) for e in cls.base_exprs) if b]
        self._collect_members(tree.body, "")
        self._collect_module(tree.body)
        if package is not None:
            self._collect_module(sanitise(package)[0].body)

    # ---- reading
    def _collect_classes(self, body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                qualname = prefix + node.name
                self.classes[qualname] = StubClass(qualname, list(node.bases))
                self._collect_classes(node.body, qualname + ".")

    def _collect_members(self, body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, ast.ClassDef):
                continue
            cls = self.classes[prefix + node.name]
            for item in node.body:
                for name, member in self._members_of(item, cls.qualname):
                    if name not in cls.members or cls.members[name].kind == "method" and member.kind != "method":
                        cls.members[name] = member
            self._collect_members(node.body, cls.qualname + ".")

    def _members_of(self, item: ast.stmt, owner: str) -> Iterator[tuple[str, Member]]:
        if isinstance(item, ast.ClassDef):
            yield item.name, Member("class", f"{owner}.{item.name}")
        elif isinstance(item, ast.FunctionDef):
            decorators = {ast.unparse(d) for d in item.decorator_list}
            is_property = "property" in decorators or any(d.endswith(".setter") for d in decorators)
            kind = "property" if is_property else "method"
            yield item.name, Member(kind, self.resolve(item.returns))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            yield item.target.id, Member("attribute", self.resolve(item.annotation))
        elif isinstance(item, ast.Assign):
            for target in item.targets:
                if isinstance(target, ast.Name):
                    yield target.id, Member("attribute")

    def _collect_module(self, body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                self.module[node.name] = Member("class", node.name)
            elif isinstance(node, ast.FunctionDef):
                self.module.setdefault(node.name, Member("function", self.resolve(node.returns)))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                self.module[node.target.id] = Member("attribute", self.resolve(node.annotation))
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.module.setdefault(target.id, Member("attribute"))
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    name = alias.asname or alias.name
                    if alias.name in self.classes:
                        self.module[name] = Member("class", alias.name)
                    else:
                        self.module.setdefault(name, Member("attribute"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.module.setdefault(alias.asname or alias.name.split(".")[0], Member("attribute"))

    # ---- queries
    def resolve(self, node: ast.expr | None) -> str | None:
        """The stub class an annotation names (ClassVar/Optional/`| None` unwrapped), or None."""
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                return self.resolve(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                return None
        if isinstance(node, ast.Subscript):
            if ast.unparse(node.value).rsplit(".", 1)[-1] in ("ClassVar", "Optional"):
                return self.resolve(node.slice)
            return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            found = {t for t in (self.resolve(node.left), self.resolve(node.right)) if t}
            return found.pop() if len(found) == 1 else None
        if isinstance(node, ast.Name | ast.Attribute):
            text = ast.unparse(node)
            for prefix in _STUB_PREFIXES:
                text = text.removeprefix(prefix)
            if text in self.classes:
                return text
            last = text.rsplit(".", 1)[-1]
            return last if last in self.classes else None
        return None

    def lookup(self, qualname: str, name: str) -> Member | None:
        seen: set[str] = set()
        todo = [qualname]
        while todo:
            current = todo.pop(0)
            if current in seen or current not in self.classes:
                continue
            seen.add(current)
            cls = self.classes[current]
            if name in cls.members:
                return cls.members[name]
            todo.extend(cls.bases)
        return None


def find_stub() -> tuple[Path, Path | None, str]:
    """(bindings .pyi, package .pyi, version) of the installed tensorrt-stubs; StubNotFound if absent."""
    try:
        dist = importlib.metadata.distribution(STUB_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise StubNotFound(
            f"{STUB_DISTRIBUTION} is not installed: pip install --no-deps {STUB_DISTRIBUTION}=={STUB_PIN}"
        ) from exc
    files = {str(f).replace("\\", "/"): f for f in dist.files or ()}
    if BINDINGS_STUB not in files:
        raise StubNotFound(f"{STUB_DISTRIBUTION} {dist.version} has no {BINDINGS_STUB}")
    bindings = Path(str(dist.locate_file(files[BINDINGS_STUB])))
    package = Path(str(dist.locate_file(files[PACKAGE_STUB]))) if PACKAGE_STUB in files else None
    return bindings, package, dist.version


def load_stub_index() -> StubIndex:
    bindings, package, version = find_stub()
    return StubIndex(
        bindings.read_text(encoding="utf-8"),
        package.read_text(encoding="utf-8") if package is not None else None,
        version,
    )


# ------------------------------------------------------------------------------- the source

# Inferred types: ("module",), ("class", q), ("instance", q), ("member", q, name, Member),
# ("function", Member), ("self", attrs) for `self` inside a class; None = unknown.
Type = tuple | None


def imports_tensorrt(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tensorrt" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "tensorrt":
            return True
        if isinstance(node, ast.ImportFrom) and any(a.name in MODULE_FACTORIES for a in node.names):
            return True
    return False


class _Checker:
    def __init__(self, index: StubIndex, tree: ast.Module, path: str) -> None:
        self.index = index
        self.path = path
        self.problems: list[Problem] = []
        self.allowed_used: set[Allowed] = set()
        self.verified = 0  # TensorRT names and members found in the stub
        self.quiet = 0  # > 0: a pre-pass that must not report (the real pass will)
        self.globals: dict[str, Type] = {}
        self.functions: dict[str, ast.expr] = {}  # module-level function -> return annotation
        for node in ast.walk(tree):  # aliases anywhere in the file name the module file-wide
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "tensorrt":
                        self.globals[alias.asname or "tensorrt"] = ("module",)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "tensorrt":
                for alias in node.names:
                    text = f"from tensorrt import {alias.name}"
                    self.globals[alias.asname or alias.name] = self._module_attr(alias.name, node, text)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
                self.functions[node.name] = node.returns
        self.scopes: list[dict[str, Type]] = [self.globals]
        self.statements(tree.body, None)

    # ---- reporting
    def report(self, node: ast.AST, expr: str, message: str) -> None:
        if self.quiet:
            return
        line, col = getattr(node, "lineno", 0), getattr(node, "col_offset", 0) + 1
        self.problems.append(Problem(self.path, line, col, expr, message))

    def _allowed(self, owner: str, name: str, node: ast.AST, expr: str) -> bool:
        for entry in ALLOW_LIST:
            if entry.owner == owner and entry.name == name:
                if self.path in entry.files:
                    self.allowed_used.add(entry)
                else:
                    self.report(node, expr, f"allowed only in {', '.join(entry.files)} ({entry.reason})")
                return True
        return False

    def _gated(self, owner: str, name: str, node: ast.AST, expr: str) -> None:
        for entry in VERSION_GATED:
            if entry.name == name and entry.owner in (owner, *self._ancestors(owner)) and self.path not in entry.files:
                where = f"only in {', '.join(entry.files)}" if entry.files else "nowhere"
                self.report(node, expr, f"not in every supported TensorRT ({entry.reason}); use it {where}")

    def _ancestors(self, owner: str) -> list[str]:
        found: list[str] = []
        todo = list(self.index.classes[owner].bases) if owner in self.index.classes else []
        while todo:
            base = todo.pop()
            if base not in found and base in self.index.classes:
                found.append(base)
                todo.extend(self.index.classes[base].bases)
        return found

    def _missing(self, owner: str, name: str, node: ast.AST, expr: str) -> None:
        if not self._allowed(owner, name, node, expr) and not self.quiet:
            where = "module tensorrt" if owner == MODULE else f"class {owner}"
            self.report(node, expr, f"{where} has no {name!r} in the TensorRT {self.index.version} stub")

    # ---- types
    def _module_attr(self, name: str, node: ast.AST, expr: str) -> Type:
        if name.startswith("__") and name.endswith("__") and name not in self.index.module:
            return None
        member = self.index.module.get(name)
        if member is None:
            self._missing(MODULE, name, node, expr)
            return None
        self.verified += 1
        self._gated(MODULE, name, node, expr)
        if member.kind == "class":
            return ("class", member.type)
        if member.kind == "function":
            return ("function", member)
        return ("instance", member.type) if member.type else None

    def _class_attr(self, owner: str, name: str, node: ast.AST, expr: str, on_instance: bool) -> Type:
        if name.startswith("__") and name.endswith("__"):
            return None  # object's own attributes (__init__, __class__, __name__, ...)
        member = self.index.lookup(owner, name)
        if member is None:
            self._missing(owner, name, node, expr)
            return None
        self.verified += 1
        self._gated(owner, name, node, expr)
        if member.kind == "class":
            return ("class", member.type)
        if member.kind == "method":
            return ("member", owner, name, member)
        if member.kind == "property" and not on_instance:
            return None
        return ("value", owner, name, member)  # a property or attribute: settle() gives its type

    @staticmethod
    def settle(value: Type) -> Type:
        """A property or attribute read becomes an instance of its declared type (or unknown)."""
        if value is not None and value[0] == "value":
            return ("instance", value[3].type) if value[3].type else None
        return value

    def lookup(self, name: str) -> Type:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def bind(self, name: str, value: Type) -> None:
        if value is None:
            self.scopes[-1].pop(name, None)
        else:
            self.scopes[-1][name] = value

    def instance_of(self, annotation: ast.expr | None) -> Type:
        """The type an annotation declares (`trt.X`, `trt.X | None`, `Optional[trt.X]`, "trt.X")."""
        if annotation is None:
            return None
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                parsed = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                return None
            return self.instance_of(ast.copy_location(parsed, annotation)) if parsed else None
        if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
            found = [t for t in (self.instance_of(annotation.left), self.instance_of(annotation.right)) if t]
            return found[0] if len(found) == 1 else None
        if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value).rsplit(".", 1)[-1] == "Optional":
            return self.instance_of(annotation.slice)
        value = self.expr(annotation)
        return ("instance", value[1]) if value and value[0] == "class" else None

    def expr(self, node: ast.AST | None) -> Type:
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            base = self.settle(self.expr(node.value))
            text = ast.unparse(node)
            if base is None:
                return None
            if base[0] == "module":
                return self._module_attr(node.attr, node, text)
            if base[0] == "class":
                return self._class_attr(base[1], node.attr, node, text, on_instance=False)
            if base[0] == "instance":
                return self._class_attr(base[1], node.attr, node, text, on_instance=True)
            if base[0] == "self":
                return base[1].get(node.attr)
            return None
        if isinstance(node, ast.Call):
            func = self.expr(node.func)
            for child in [*node.args, *node.keywords]:
                self.walk(child)
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in MODULE_FACTORIES:
                return ("module",)
            if func is None:
                local = isinstance(node.func, ast.Name) and node.func.id in self.functions
                if local and self.lookup(node.func.id) is None:
                    return self.instance_of(self.functions[node.func.id])
                return None
            if func[0] == "class":
                return ("instance", func[1])
            if func[0] == "member":
                return ("instance", func[3].type) if func[3].type else None
            if func[0] == "function":
                return ("instance", func[1].type) if func[1].type else None
            if func[0] == "value":
                self.report(node, ast.unparse(node.func), f"{func[1]}.{func[2]} is a {func[3].kind}, not a method")
            return None
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            self.scopes.append({})
            for generator in node.generators:
                self.assign(generator.target, self.element(self.expr(generator.iter)))
                for condition in generator.ifs:
                    self.expr(condition)
            if isinstance(node, ast.DictComp):
                self.expr(node.key)
                self.expr(node.value)
                element = None
            else:
                element = self.settle(self.expr(node.elt))
            self.scopes.pop()
            return ("list", element) if element else None
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            elements = [self.settle(self.expr(e)) for e in node.elts]
            same = bool(elements) and elements[0] is not None and all(e == elements[0] for e in elements)
            return ("list", elements[0]) if same else None
        if isinstance(node, ast.Subscript):
            base = self.settle(self.expr(node.value))
            self.walk(node.slice)
            return self.element(base) if not isinstance(node.slice, ast.Slice) else base
        if isinstance(node, ast.Lambda):
            self.walk(node.body)
            return None
        for child in ast.iter_child_nodes(node):
            self.walk(child)
        return None

    @staticmethod
    def element(value: Type) -> Type:
        """The element type of a list built from known elements (comprehension, display)."""
        return value[1] if value is not None and value[0] == "list" else None

    def walk(self, node: ast.AST) -> None:
        if isinstance(node, ast.expr):
            self.expr(node)
        else:
            for child in ast.iter_child_nodes(node):
                self.walk(child)

    # ---- statements
    def assign(self, target: ast.expr, value: Type) -> None:
        value = self.settle(value)
        on_name = isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
        owner = self.lookup(target.value.id) if on_name else None
        if isinstance(target, ast.Name):
            self.bind(target.id, value)
        elif isinstance(target, ast.Attribute) and owner is not None and owner[0] == "self":
            if value is not None:  # `self.x = ...` types self.x in every method of the class
                owner[1][target.attr] = value
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self.assign(element, None)
        elif isinstance(target, ast.Starred):
            self.assign(target.value, None)
        else:
            self.expr(target)  # trt objects' attributes being set are checked like reads

    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, self_attrs: dict | None) -> None:
        for decorator in node.decorator_list:
            self.walk(decorator)
        scope: dict[str, Type] = {}
        params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        for extra in (node.args.vararg, node.args.kwarg):
            if extra is not None:
                params.append(extra)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.walk(default)
        is_static = any(ast.unparse(d) == "staticmethod" for d in node.decorator_list)
        for i, arg in enumerate(params):
            declared = self.instance_of(arg.annotation)
            if declared is not None:
                scope[arg.arg] = declared
            elif i == 0 and self_attrs is not None and not is_static:
                scope[arg.arg] = ("self", self_attrs)
        self.instance_of(node.returns)
        self.scopes.append(scope)
        self.statements(node.body, None)
        self.scopes.pop()

    def class_def(self, node: ast.ClassDef) -> None:
        for expr in [*node.bases, *node.keywords, *node.decorator_list]:
            self.walk(expr)
        attrs: dict[str, Type] = {}
        self.quiet += 1
        for item in node.body:  # class-level annotations type `self.<name>` in every method
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                declared = self.instance_of(item.annotation)
                if declared is not None:
                    attrs[item.target.id] = declared
        self.quiet -= 1
        self.scopes.append({})
        self.statements(node.body, attrs)
        self.scopes.pop()

    def statements(self, body: Iterable[ast.stmt], self_attrs: dict | None) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.function(node, self_attrs)
            elif isinstance(node, ast.ClassDef):
                self.class_def(node)
            elif isinstance(node, ast.Assign):
                value = self.expr(node.value)
                for target in node.targets:
                    self.assign(target, value)
            elif isinstance(node, ast.AnnAssign):
                value = self.expr(node.value) if node.value is not None else None
                declared = self.instance_of(node.annotation)
                if node.value is not None or not isinstance(node.target, ast.Name):
                    self.assign(node.target, declared or value)
                elif declared is not None:
                    self.bind(node.target.id, declared)
            elif isinstance(node, ast.AugAssign):
                self.expr(node.value)
                self.expr(node.target)
            elif isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    value = self.expr(item.context_expr)
                    if item.optional_vars is not None:
                        self.assign(item.optional_vars, value)
                self.statements(node.body, self_attrs)
            elif isinstance(node, ast.For | ast.AsyncFor):
                self.assign(node.target, self.element(self.settle(self.expr(node.iter))))
                self.statements(node.body, self_attrs)
                self.statements(node.orelse, self_attrs)
            elif isinstance(node, ast.If | ast.While):
                self.expr(node.test)
                self.statements(node.body, self_attrs)
                self.statements(node.orelse, self_attrs)
            elif isinstance(node, ast.Try):
                self.statements(node.body, self_attrs)
                for handler in node.handlers:
                    if handler.type is not None:
                        self.walk(handler.type)
                    if handler.name:
                        self.bind(handler.name, None)
                    self.statements(handler.body, self_attrs)
                self.statements(node.orelse, self_attrs)
                self.statements(node.finalbody, self_attrs)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                continue  # tensorrt aliases were bound file-wide up front
            else:
                self.walk(node)


@dataclass
class FileReport:
    path: str
    problems: list[Problem] = field(default_factory=list)
    allowed_used: set[Allowed] = field(default_factory=set)
    verified: int = 0  # TensorRT names and members checked and found: 0 means nothing was checked
    uses_tensorrt: bool = False


def check_source(source: str, path: str, index: StubIndex) -> FileReport:
    """Check one module's source; `path` names it in messages and for the allow-list."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        problem = Problem(path, exc.lineno or 0, exc.offset or 0, "<source>", f"not valid Python: {exc.msg}")
        return FileReport(path, [problem])
    if not imports_tensorrt(tree):
        return FileReport(path)
    checker = _Checker(index, tree, path)
    return FileReport(path, checker.problems, checker.allowed_used, checker.verified, True)


def _label(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def tensorrt_modules(root: Path = REPO) -> list[Path]:
    """Every project module (under PACKAGES) that imports tensorrt."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except SyntaxError:
                found.append(path)  # check_files reports it
                continue
            if imports_tensorrt(tree):
                found.append(path)
    return found


def check_files(paths: Iterable[Path], index: StubIndex, root: Path = REPO) -> list[FileReport]:
    return [check_source(path.read_text(encoding="utf-8"), _label(path, root), index) for path in paths]


def check_allow_list(index: StubIndex, used: set[Allowed] | None = None) -> list[str]:
    """Entries that the stub no longer needs, that name a missing class, or (given `used`) that nothing uses.

    VERSION_GATED entries must name what the stub has (else they belong on ALLOW_LIST)."""
    stale = []
    for entry in (*ALLOW_LIST, *VERSION_GATED):
        name = f"{'allow-list' if entry in ALLOW_LIST else 'version-gated'} entry {entry.owner}.{entry.name}"
        if entry.owner == MODULE:
            exists = entry.name in index.module
        else:
            exists = index.lookup(entry.owner, entry.name) is not None
        if entry.owner != MODULE and entry.owner not in index.classes:
            stale.append(f"{name}: no class {entry.owner} in the stub")
        elif entry in VERSION_GATED:
            if not exists:
                stale.append(f"{name}: the {index.version} stub lacks it; it belongs on ALLOW_LIST")
        elif exists:
            stale.append(f"{name}: the {index.version} stub has it; remove the entry")
        elif used is not None and entry not in used:
            stale.append(f"{name}: not used by {', '.join(entry.files)}; remove it")
    return stale


def check_project(root: Path = REPO, index: StubIndex | None = None) -> tuple[list[FileReport], list[str]]:
    """(one report per TensorRT-using module, every problem as text) for the whole project."""
    index = index or load_stub_index()
    reports = check_files(tensorrt_modules(root), index, root)
    used: set[Allowed] = set().union(*(r.allowed_used for r in reports))
    problems = [str(p) for r in reports for p in r.problems]
    return reports, problems + check_allow_list(index, used)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.tool_parser("trt_api_check.py", __doc__)
    parser.add_argument(
        "files", nargs="*", type=Path, help="modules to check (default: every project module that imports tensorrt)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        index = load_stub_index()
    except StubNotFound as exc:
        print(f"trt_api_check: {exc}", file=sys.stderr)
        return 2
    if args.files:
        reports = check_files(args.files, index)
        problems = [str(p) for r in reports for p in r.problems]
    else:
        reports, problems = check_project(REPO, index)
    for line in problems:
        print(line)
    print(
        f"trt_api_check: {len(reports)} module(s) against tensorrt-stubs {index.version}: {len(problems)} problem(s)",
        file=sys.stderr,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
