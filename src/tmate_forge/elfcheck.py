"""Checks on a built ELF executable: fully static, nothing left undefined."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import Symbol, SymbolTableSection

from .arch import Arch
from .errors import VerifyError

MACHINES: dict[Arch, str] = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}


@dataclass(frozen=True, kw_only=True)
class ElfReport:
    machine: str
    interpreter: bool  # a PT_INTERP segment: the kernel would load a dynamic linker
    dynamic: bool  # a PT_DYNAMIC segment or a .dynamic section
    undefined: tuple[str, ...]  # strong undefined symbols in .symtab
    has_symbols: bool  # .symtab present (the debug file has it; the stripped binary not)


def _unresolved(symbol: Symbol) -> bool:
    """An undefined symbol that something at run time would have to provide.

    Weak references resolve to 0 by design. So does musl's start code's hidden weak
    reference to _DYNAMIC, which tells a static-pie start from a plain static one: `nm -u`
    lists it in every static musl program (local in the link output, global in the debug
    file objcopy makes), yet a hidden or local symbol can never come from elsewhere.
    """
    return bool(
        symbol.name
        and symbol["st_shndx"] == "SHN_UNDEF"
        and symbol["st_info"]["bind"] not in ("STB_WEAK", "STB_LOCAL")
        and symbol["st_other"]["visibility"] not in ("STV_HIDDEN", "STV_INTERNAL")
    )


def inspect(path: Path) -> ElfReport:
    with path.open("rb") as stream:
        try:
            elf = ELFFile(stream)
        except ELFError as err:
            tip = "rebuild it with `nox -s compile -- --arch ARCH`"
            raise VerifyError(f"{path}: not an ELF file: {err}", tip=tip) from err
        segments = [segment["p_type"] for segment in elf.iter_segments()]
        symtab = elf.get_section_by_name(".symtab")
        undefined: list[str] = []
        if isinstance(symtab, SymbolTableSection):
            undefined = [symbol.name for symbol in symtab.iter_symbols() if _unresolved(symbol)]
        return ElfReport(
            machine=elf["e_machine"],
            interpreter="PT_INTERP" in segments,
            dynamic="PT_DYNAMIC" in segments or elf.get_section_by_name(".dynamic") is not None,
            undefined=tuple(sorted(undefined)),
            has_symbols=isinstance(symtab, SymbolTableSection),
        )


def check_static(path: Path, arch: Arch, *, symbols_from: Path | None = None) -> ElfReport:
    """Raise VerifyError unless path is a static executable for arch with no undefined symbols.

    A stripped binary has no symbol table, so its symbols are read from symbols_from (the
    unstripped link output) when given.
    """
    report = inspect(path)
    problems = []
    if report.machine != MACHINES[arch]:
        problems.append(f"machine is {report.machine}, expected {MACHINES[arch]}")
    if report.interpreter:
        problems.append("it has a PT_INTERP segment (it wants a dynamic loader)")
    if report.dynamic:
        problems.append("it has a dynamic section")
    symbols = inspect(symbols_from) if symbols_from is not None else report
    if symbols.undefined:
        problems.append(f"undefined symbols: {', '.join(symbols.undefined[:10])}")
    if problems:
        raise VerifyError(
            f"{path}: not a self-contained static executable: {'; '.join(problems)}",
            tip="check the link flags (-static) and the link order of the static libraries",
        )
    return report
