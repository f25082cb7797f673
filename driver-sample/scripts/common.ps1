# Shared by the sample's scripts: every step either succeeds or stops the script with what failed
# and what to do about it. Dot-source it: . "$PSScriptRoot\common.ps1"
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$SampleRoot = Split-Path -Parent $PSScriptRoot
$ServiceName = 'fltportsample'
$CertSubject = 'CN=fltport sample test signing'
$OutDir = Join-Path $PSScriptRoot 'out'
$PackageDir = Join-Path $OutDir 'package'

function Stop-Step([string]$What, [string]$Fix) {
    Write-Host "FAILED: $What" -ForegroundColor Red
    Write-Host "What to do: $Fix" -ForegroundColor Yellow
    exit 1
}

function Write-Step([string]$What) {
    Write-Host "==> $What" -ForegroundColor Cyan
}

# Runs a native program; a non-zero exit code stops the script.
function Invoke-Checked([string]$What, [string]$Fix, [string]$Program, [string[]]$Arguments) {
    Write-Step $What
    & $Program @Arguments
    if ($LASTEXITCODE -ne 0) { Stop-Step "$What ($Program exited with $LASTEXITCODE)" $Fix }
}

function Assert-Administrator {
    $principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        Stop-Step 'this script needs an elevated PowerShell' 'start PowerShell with "Run as administrator" and run it again'
    }
}

function Assert-TestSigning {
    $boot = (& bcdedit.exe /enum '{current}') -join "`n"
    if ($LASTEXITCODE -ne 0) { Stop-Step 'reading the boot configuration (bcdedit /enum {current})' 'run this script elevated' }
    if ($boot -notmatch '(?im)^testsigning\s+Yes') {
        Stop-Step 'test signing is off: Windows will refuse a test-signed driver' `
            'run "bcdedit /set testsigning on" elevated (with Secure Boot off in the firmware or VM settings), reboot, and run this again'
    }
}

# The newest Windows Kits tool of that name for this machine's architecture.
function Find-KitTool([string]$Name) {
    $kits = Join-Path ${env:ProgramFiles(x86)} 'Windows Kits\10\bin'
    $arch = if ($env:PROCESSOR_ARCHITECTURE -eq 'ARM64') { 'arm64' } else { 'x64' }
    $found = Get-ChildItem -Path $kits -Filter $Name -Recurse -ErrorAction SilentlyContinue |
        Where-Object { $_.DirectoryName -match "\\($arch|x86)$" } |
        Sort-Object { $_.DirectoryName } -Descending | Select-Object -First 1
    if ($null -eq $found) {
        Stop-Step "$Name was not found under $kits" 'install the Windows SDK and WDK (see driver-sample\README.md), or run from a "Developer PowerShell for VS"'
    }
    return $found.FullName
}

function Get-TestCertificate {
    return Get-ChildItem Cert:\LocalMachine\My | Where-Object { $_.Subject -eq $CertSubject } |
        Sort-Object NotAfter -Descending | Select-Object -First 1
}

function Test-FilterLoaded {
    $filters = (& fltmc.exe filters) -join "`n"
    return $filters -match "(?im)^$ServiceName\s"
}
