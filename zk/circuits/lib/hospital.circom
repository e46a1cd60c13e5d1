// SPDX-License-Identifier: GPL-3.0-or-later
pragma circom 2.0.0;

// The reader class names hospital classHospital, or any member hospital (0).
template HospitalInClass() {
    signal input classHospital;
    signal input hospitalId;

    classHospital * (classHospital - hospitalId) === 0;
}
